"""IDX files (the MNIST format: big-endian header, then raw uint8 values), plain or gzipped."""

from pathlib import Path

import numpy as np

from training.data.checks import as_pixels, check_same_count
from training.data.dataset import DataError
from training.data.files import read_bytes

UBYTE = 0x08  # the only element type MNIST-style data uses
IMAGES_NDIM, LABELS_NDIM = 3, 1
SPLITS = ("train", "t10k")


def parse_idx(data: bytes, ndim: int, source: str) -> np.ndarray:
    """Check the magic number and that the header's dimensions match the bytes that follow."""
    expected_magic = (UBYTE << 8) | ndim
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{source}: only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{source}: wrong IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}); "
            "is this the right file (images vs labels)?"
        )
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DataError(
            f"{source}: header says {' x '.join(map(str, dims))} = {expected} values "
            f"but the file holds {len(data) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_images(path: Path) -> np.ndarray:
    """Images file -> writable uint8 [N, 784]."""
    return as_pixels(parse_idx(read_bytes(path), IMAGES_NDIM, str(path)), str(path))


def read_labels(path: Path) -> np.ndarray:
    """Labels file -> int64 [N]."""
    return parse_idx(read_bytes(path), LABELS_NDIM, str(path)).astype(np.int64)


def read_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """One split's images and labels, checked to pair up."""
    x, y = read_images(images), read_labels(labels)
    check_same_count(x, y, f"{images} and {labels}")
    return x, y


def find_file(folder: Path, split: str, kind: str) -> Path:
    """The one `<split>-<kind>*` file in folder, e.g. train-images-idx3-ubyte(.gz)."""
    matches = sorted(p for p in folder.glob(f"{split}-{kind}*") if p.is_file())
    if len(matches) != 1:
        found = "none" if not matches else ", ".join(p.name for p in matches)
        raise DataError(
            f"{folder}: expected exactly one '{split}-{kind}*' IDX file (e.g. "
            f"{split}-{kind}-idx{IMAGES_NDIM if kind == 'images' else LABELS_NDIM}-ubyte.gz), "
            f"found {found}"
        )
    return matches[0]


def read_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, y_train, x_test, y_test from the four train-*/t10k-* files of a folder."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of IDX files")
    paths = {(s, k): find_file(folder, s, k) for s in SPLITS for k in ("images", "labels")}
    x_train, y_train = read_pair(paths["train", "images"], paths["train", "labels"])
    x_test, y_test = read_pair(paths["t10k", "images"], paths["t10k", "labels"])
    return x_train, y_train, x_test, y_test
