"""Turn loaded arrays into the `Dataset` form (uint8 [N, 784], int64 [N]) or say what is wrong."""

import numpy as np

from training.data.dataset import FEATURES, DataError

SIDE = 28  # images are SIDE x SIDE, row-major


def as_pixels(values: np.ndarray, source: str) -> np.ndarray:
    """Pixels as writable uint8 [N, 784]; accepts [N, 28, 28] and any whole numbers 0..255."""
    if values.ndim == 3 and values.shape[1:] == (SIDE, SIDE):
        values = values.reshape(len(values), FEATURES)
    if values.ndim != 2 or values.shape[1] != FEATURES:
        raise DataError(
            f"{source}: images have shape {list(values.shape)}, expected [N, {FEATURES}] "
            f"or [N, {SIDE}, {SIDE}] ({FEATURES} pixel features per image)"
        )
    if len(values) == 0:
        raise DataError(f"{source}: no images (0 rows)")
    if values.dtype == np.uint8:
        return np.array(values, copy=True)
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise DataError(f"{source}: pixels have dtype {values.dtype}, expected numbers 0..255")
    bad = ~np.isfinite(values) | (values < 0) | (values > 255) | (values != np.round(values))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        hint = " (looks scaled to 0..1; multiply by 255)" if values.max() <= 1.0 else ""
        raise DataError(
            f"{source}: pixel values must be whole numbers 0..255; "
            f"image {row}, pixel {col} is {values[row, col].item()!r}{hint}"
        )
    return values.astype(np.uint8)


def as_labels(values: np.ndarray, source: str) -> np.ndarray:
    """Labels as int64 [N]; refuses non-integral or non-finite values."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DataError(f"{source}: labels have shape {list(values.shape)}, expected [N]")
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.floating):
        raise DataError(f"{source}: labels have dtype {values.dtype}, expected integers")
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{source}: label {row} is {values[row].item()!r}, expected an integer")
    return values.astype(np.int64)


def check_same_count(x: np.ndarray, y: np.ndarray, source: str) -> None:
    """Images and labels must pair up one to one."""
    if len(x) != len(y):
        raise DataError(f"{source}: {len(x)} images but {len(y)} labels; the counts must match")


def check_label_range(y: np.ndarray, num_classes: int, source: str) -> None:
    """Every label must index a class: 0..C-1."""
    outside = (y < 0) | (y >= num_classes)
    if outside.any():
        row = int(np.argmax(outside))
        raise DataError(
            f"{source}: label {int(y[row])} at row {row} is outside 0..{num_classes - 1} "
            f"({num_classes} classes); labels must be consecutive integers from 0"
        )
