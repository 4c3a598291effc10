"""Stratified, seeded splits: each class keeps its share on both sides, same seed = same split."""

from collections.abc import Sequence

import numpy as np

from training.data.dataset import DataError


def stratified_indices(
    y: np.ndarray,
    fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out) row indices, both ascending; round(n * fraction) of each class held out.

    Every class must land on both sides (>= 1 row each), else the held-out metrics or the model
    would silently miss a class; that needs at least 2 rows per class.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be between 0 and 1 (exclusive), got {fraction}")
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        if len(rows) < 2:
            name = class_names[label] if class_names is not None else str(label)
            raise DataError(
                f"class {name!r} has {len(rows)} row; a stratified {fraction:.0%} split needs "
                f"at least 2 rows per class (one on each side); add rows of class {name!r}"
            )
        count = min(max(int(np.floor(len(rows) * fraction + 0.5)), 1), len(rows) - 1)
        held.append(rng.permutation(rows)[:count])
    held_out = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(len(y)), held_out, assume_unique=True)
    return kept, held_out


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, y_train, x_val, y_val: a stratified, seeded share of (x, y) held out."""
    kept, held_out = stratified_indices(y, fraction, seed)
    return x[kept], y[kept], x[held_out], y[held_out]
