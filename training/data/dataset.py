"""The in-memory form every data source is turned into, whatever file it came from."""

import hashlib
from dataclasses import dataclass

import numpy as np

FEATURES = 784  # 28 x 28 pixels, row-major


class DataError(Exception):
    """Bad or missing data: the message names the file and the problem, for the user to fix."""


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays of one source: pixels uint8 [N, 784] (0..255), labels int64 [N]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    def fingerprint(self) -> str:
        """sha256 over the four arrays (dtype, shape and bytes), so a model card pins its data."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()
