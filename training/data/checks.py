"""Turn loaded arrays into the `Dataset` form (uint8 [N, 784], int64 [N]) or say what is wrong."""

import numpy as np

from training.data.dataset import FEATURES, DataError

SIDE = 28  # images are SIDE x SIDE, row-major
LABEL_LIMIT = 2**31  # class ids are small integers; |label| at or past this is a data error


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
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise DataError(f"{source}: labels have dtype {values.dtype}, expected integers")
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{source}: label {row} is {values[row].item()!r}, expected an "
                            "integer")
    # Why: a float label such as 1e20 would wrap to -9223372036854775808 in int64 and be
    # published as a class; a uint64 label past int64 would wrap the same way.
    too_big = np.abs(values.astype(np.float64)) >= LABEL_LIMIT
    if too_big.any():
        row = int(np.argmax(too_big))
        raise DataError(f"{source}: label {row} is {values[row].item()!r}, too large for a class "
                        f"id; labels must be integers between {-LABEL_LIMIT + 1} and "
                        f"{LABEL_LIMIT - 1}")
    return values.astype(np.int64)


def check_same_count(x: np.ndarray, y: np.ndarray, source: str) -> None:
    """Images and labels must pair up one to one."""
    if len(x) != len(y):
        raise DataError(f"{source}: {len(x)} images but {len(y)} labels; the counts must match")


def check_classes_trained(y_train: np.ndarray, y_test: np.ndarray, class_names: tuple[str, ...],
                          source: str) -> None:
    """Every class the test split holds must also be in the training split.

    Why: a model never shown a class cannot predict it; it would be published with 0.0 on
    that class and its overall accuracy would hide it.
    """
    missing = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if len(missing):
        names = ", ".join(repr(class_names[int(c)]) if 0 <= c < len(class_names) else str(int(c))
                          for c in missing)
        raise DataError(
            f"{source}: class {names} is in the test split ({int(np.isin(y_test, missing).sum())}"
            f" rows) but not in the training split; a model cannot learn a class it never sees: "
            "add training rows of it or drop it from the test files"
        )


def check_label_range(y: np.ndarray, num_classes: int, source: str) -> None:
    """Every label must index a class: 0..C-1."""
    outside = (y < 0) | (y >= num_classes)
    if outside.any():
        row = int(np.argmax(outside))
        raise DataError(
            f"{source}: label {int(y[row])} at row {row} is outside 0..{num_classes - 1} "
            f"({num_classes} classes); labels must be consecutive integers from 0"
        )
