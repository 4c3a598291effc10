"""NPZ files in the Keras `mnist.npz` layout: x_train, y_train, x_test, y_test."""

import zipfile
from pathlib import Path

import numpy as np

from training.data.checks import as_labels, as_pixels, check_same_count
from training.data.dataset import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, y_train, x_test, y_test; pixels may be [N, 28, 28] or [N, 784]."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; expected {', '.join(KEYS)} "
                    f"(found {', '.join(archive.files) or 'none'})"
                )
            arrays = {key: archive[key] for key in KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz archive ({error})") from error
    out: list[np.ndarray] = []
    for split in ("train", "test"):
        source = f"{path} [{split}]"
        x = as_pixels(arrays[f"x_{split}"], source)
        y = as_labels(arrays[f"y_{split}"], source)
        check_same_count(x, y, source)
        out += [x, y]
    return out[0], out[1], out[2], out[3]
