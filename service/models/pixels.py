"""Pixels as people have them: 0..1-scaled data and 28x28 images, made into the model's input.

Every model takes raw pixels 0..255 (scaling is inside the ONNX graph). Most Keras and PyTorch
tutorials divide by 255 first; sent as is, such rows are all but black to the model and come
back as one confident wrong label. So a row whose brightest pixel is above 0 but at most 1 is
refused, naming the fix, unless the request says which range it uses: the V2 request parameter
`pixel_range` or the V1 field of the same name, "0..255" (the default; turns the check off) or
"0..1" (the pixels are multiplied by 255 here). Images as `x_test[0].tolist()` gives them,
[N, 28, 28], are reshaped to [N, 784] (row-major, as the model reads them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.errors import InvalidInput

SIDE = 28
RAW = "0..255"
UNIT = "0..1"
PIXEL_RANGES = (RAW, UNIT)
PARAMETER = "pixel_range"


def pixel_range(value: Any, protocol: str) -> str | None:
    """The declared range of a request (None when it declares none), or 400 naming both."""
    if value is None or (isinstance(value, str) and value in PIXEL_RANGES):
        return value
    where = f"parameters.{PARAMETER}" if protocol == "v2" else PARAMETER
    raise InvalidInput(f"{where} is {value!r}; expected \"{RAW}\" (raw pixels, the default) "
                       f"or \"{UNIT}\" (pixels divided by 255)")


def as_rows(array: np.ndarray) -> np.ndarray:
    """[N, 28, 28] images as [N, 784] rows; any other shape unchanged (checked by the caller)."""
    if array.ndim == 3 and array.shape[1:] == (SIDE, SIDE):
        return array.reshape(array.shape[0], SIDE * SIDE)
    return array


def shape_hint(shape: list[int]) -> str:
    """Extra advice for a shape that is one image without its batch dimension."""
    if shape == [SIDE, SIDE]:
        return f"; one {SIDE}x{SIDE} image needs a batch dimension: shape [1, {SIDE}, {SIDE}]"
    return ""


def refuse_scaled_rows(array: np.ndarray, field: str, model_name: str, protocol: str) -> None:
    """400 when a row's brightest pixel is above 0 and at most 1: pixels scaled to 0..1.

    Called on rows already known to lie in 0..255. A real raw image that dark carries no digit,
    so refusing it loses nothing; an all-zero (blank) row passes.
    """
    peaks = array.max(axis=1)
    scaled = np.flatnonzero((peaks > 0) & (peaks <= 1))
    if scaled.size == 0:
        return
    row = int(scaled[0])
    how = (f'"parameters": {{"{PARAMETER}": "{UNIT}"}}' if protocol == "v2"
           else f'"{PARAMETER}": "{UNIT}" next to "instances"')
    raise InvalidInput(
        f"{field}: row {row} looks scaled to 0..1 (its brightest pixel is "
        f"{peaks[row].item()!r}) but model '{model_name}' takes raw pixels 0..255; multiply by "
        f"255 before sending, or send {how}"
    )


def from_unit_range(array: np.ndarray, field: str) -> np.ndarray:
    """Pixels declared as 0..1, checked and multiplied by 255 into float32."""
    values = np.asarray(array, dtype=np.float64)
    inside = (values >= 0) & (values <= 1)
    if not inside.all():
        row, column = np.argwhere(~inside)[0]
        value = array[row, column].item()
        raise InvalidInput(f"{field}: value {value!r} at row {row}, column {column} is outside "
                           f"0..1; with {PARAMETER} \"{UNIT}\" every pixel must be in 0..1")
    return (values * 255).astype(np.float32)
