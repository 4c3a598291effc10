"""One place that seeds every random number generator, so same config + seed = same weights."""

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for shuffling batches.

    Shuffling draws from its own generator so that anything else touching the global torch RNG
    (dropout, a library) cannot change the batch order between two runs of one config.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
