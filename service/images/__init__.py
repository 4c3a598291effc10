"""Images in: PNG/JPEG bytes -> the model's float32 [N, 784] rows (decode, then normalize).

`decode` refuses unsafe or ambiguous files, `normalize` redoes the training data's recipe
(the model card names it); both are plain functions, shared by the service and `mlp-serve
predict`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.images.decode import ImageLimits, decode, from_base64
from service.images.normalize import NONE, NORMALIZATIONS, to_input

__all__ = ["NONE", "NORMALIZATIONS", "ImageLimits", "from_base64", "to_rows"]


def to_rows(blobs: Sequence[bytes], method: str, limits: ImageLimits,
            where: str = "image {}") -> np.ndarray:
    """float32 [N, 784] pixel rows (0..255) of N encoded images; `where` names image i in
    errors (e.g. "instances[{}]")."""
    rows = np.empty((len(blobs), 784), np.float32)
    for index, blob in enumerate(blobs):
        rows[index] = to_input(decode(blob, where.format(index), limits), method).reshape(-1)
    return rows
