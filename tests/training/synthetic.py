"""Small generated data sets for the training tests: learnable, fast, no files needed."""

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from training.config import TrainConfig
from training.data import Dataset


def make_dataset(
    n_train: int = 240,
    n_test: int = 90,
    classes: int = 3,
    separation: float = 10.0,
    noise: float = 60.0,
    seed: int = 0,
    label_noise: float = 0.0,
) -> Dataset:
    """Rows are a shared random image + a class offset (std `separation`) + noise (std `noise`).

    The defaults are learnable by a small MLP in a few epochs; a small `separation` with few
    rows makes a wide MLP memorize the training rows instead of generalizing.
    """
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 196, 784)
    prototypes = base + rng.normal(0.0, separation, (classes, 784))

    def rows(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(count) % classes
        x = prototypes[y] + rng.normal(0.0, noise, (count, 784))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = rows(n_train)
    flipped = rng.random(n_train) < label_noise
    y_train[flipped] = rng.integers(0, classes, int(flipped.sum()))
    x_test, y_test = rows(n_test)
    names = tuple(f"class-{i}" for i in range(classes))
    return Dataset("synthetic", x_train, y_train, x_test, y_test, names)


def fast_config(tmp_path: object, **changes: object) -> TrainConfig:
    """A config that trains on synthetic data in well under a second."""
    values: dict[str, object] = {
        "name": "tiny", "data": "synthetic", "hidden_sizes": [16], "epochs": 3,
        "batch_size": 32, "validation_fraction": 0.25, "threads": 1,
        "repository": f"{tmp_path}/models", "runs_dir": f"{tmp_path}/runs",
    }
    values.update(changes)
    return TrainConfig.model_validate(values)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One torch thread: the 2 CPU cores are shared by many test processes, and torch's thread
    pool oversubscribed that way makes tiny trainings 10-50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
