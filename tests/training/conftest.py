"""Shared fixtures for tests/training. Data fixtures: small IDX/CSV files written into tmp_path."""

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

IdxWriter = Callable[..., Path]


@pytest.fixture
def write_idx() -> IdxWriter:
    """Write an IDX file: write_idx(path, uint8 array, gz=True, magic=None, extra=b"")."""

    def write(
        path: Path, array: np.ndarray, gz: bool = True, magic: int | None = None, extra: bytes = b""
    ) -> Path:
        array = np.asarray(array, dtype=np.uint8)
        header = (magic if magic is not None else 0x0800 | array.ndim).to_bytes(4, "big")
        header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        payload = header + array.tobytes() + extra
        path.write_bytes(gzip.compress(payload, compresslevel=1) if gz else payload)
        return path

    return write


def random_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """Random uint8 [N, 28, 28] images whose first pixel is the label (so rows can be traced)."""
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    images[:, 0, 0] = labels
    return images


@pytest.fixture
def make_images() -> Callable[[np.ndarray, int], np.ndarray]:
    """random_images as a fixture, so test modules need not import conftest."""
    return random_images


@pytest.fixture
def idx_folder(tmp_path: Path, write_idx: IdxWriter) -> Path:
    """A folder with the four standard MNIST file names: 3 classes, 30 train and 9 test rows."""
    folder = tmp_path / "idx"
    folder.mkdir()
    for split, count, seed in (("train", 30, 1), ("t10k", 9, 2)):
        labels = np.arange(count) % 3
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", random_images(labels, seed))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder
