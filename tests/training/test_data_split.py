"""split_validation: stratified, seeded, deterministic, and loud when a class is too small."""

import re

import numpy as np
import pytest

from training.data import DataError, split_validation


@pytest.fixture
def rows() -> tuple[np.ndarray, np.ndarray]:
    """Unbalanced classes (50 / 30 / 20 rows), each row's first pixel is its row number."""
    y = np.repeat(np.arange(3), [50, 30, 20]).astype(np.int64)
    x = np.zeros((100, 784), dtype=np.uint8)
    x[:, 0] = np.arange(100)
    return x, y


def test_each_class_keeps_its_share(rows: tuple[np.ndarray, np.ndarray]) -> None:
    x_train, y_train, x_val, y_val = split_validation(*rows, fraction=0.2, seed=0)
    assert np.bincount(y_val).tolist() == [10, 6, 4]
    assert np.bincount(y_train).tolist() == [40, 24, 16]
    # rows are not duplicated or lost, and pixels stay with their labels
    ids = np.concatenate([x_train[:, 0], x_val[:, 0]])
    assert sorted(ids.tolist()) == list(range(100))
    assert np.array_equal(rows[1][x_val[:, 0]], y_val)


def test_same_seed_same_split_other_seed_other_split(rows: tuple[np.ndarray, np.ndarray]) -> None:
    first = split_validation(*rows, fraction=0.2, seed=7)
    again = split_validation(*rows, fraction=0.2, seed=7)
    other = split_validation(*rows, fraction=0.2, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[2], other[2])


def test_class_too_small_to_split_names_class_and_count() -> None:
    y = np.array([0, 0, 0, 1, 2, 2], dtype=np.int64)
    x = np.zeros((6, 784), dtype=np.uint8)
    message = "class '1' has 1 row; a stratified 10% split needs at least 2 rows per class"
    with pytest.raises(DataError, match=message):
        split_validation(x, y, fraction=0.1, seed=0)


def test_fraction_must_be_inside_0_and_1(rows: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(DataError, match=re.escape("between 0 and 1 (exclusive), got 1.0")):
        split_validation(*rows, fraction=1.0, seed=0)
