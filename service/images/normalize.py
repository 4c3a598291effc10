"""Turn any grayscale picture into the 28x28 input a model was trained on.

MNIST was made this way (LeCun, Cortes, Burges): each digit's bounding box was scaled to fit
20x20 keeping its aspect ratio (anti-aliased, hence the grey levels), then placed in a 28x28
field so that its centre of mass sits at the centre. A model trained on MNIST expects exactly
that, so `mnist-centred` redoes it for any image: a phone photo, a scan, a 280x280 canvas.
Fashion-MNIST items were not centred by mass (they fill the frame), so those models take
`resize-only`. Both keep the training convention of light ink on a dark background: a picture
whose border is light (dark ink on paper) is inverted first. The model card names the method.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from artifact.card import IMAGE_NORMALIZATIONS as NORMALIZATIONS

SIDE = 28
BOX = 20  # MNIST: the digit's bounding box is scaled to fit 20x20
MNIST_CENTRED = "mnist-centred"
RESIZE_ONLY = "resize-only"
NONE = "none"
assert (MNIST_CENTRED, RESIZE_ONLY, NONE) == NORMALIZATIONS  # the card's names (artifact/card.py)
INK_FRACTION = 0.1  # pixels above this share of the brightest ink count for the bounding box
MIN_INK = 8  # a picture whose brightest ink is this far above the background is blank


def to_input(gray: np.ndarray, method: str) -> np.ndarray:
    """uint8 [28, 28], light ink on dark, from a uint8 [H, W] grayscale picture."""
    ink = ink_on_dark(gray)
    if method == MNIST_CENTRED:
        return centre_by_mass(ink)
    if method == RESIZE_ONLY:
        return fit(ink, SIDE)
    raise ValueError(f"unknown image normalization {method!r}; expected one of {NORMALIZATIONS}")


def ink_on_dark(gray: np.ndarray) -> np.ndarray:
    """The picture as ink above a zero background: inverted when its border is light.

    The background level is the border's median (robust to ink touching the edge); subtracting
    it makes a grey paper or a dim screen background 0, as in the training data.
    """
    border = np.concatenate((gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]))
    border.sort()  # the median by hand: np.median costs 10x more on ~100 values
    background = int(border[len(border) // 2])
    if background > 127:  # dark ink on a light background: flip to light on dark
        return background - np.minimum(gray, background)
    if background == 0:
        return gray
    return np.maximum(gray, background) - background


def centre_by_mass(ink: np.ndarray) -> np.ndarray:
    """MNIST's recipe: crop to the ink, fit 20x20 keeping the aspect, stretch to 0..255, and
    paste into 28x28 with the centre of mass in the middle. A blank picture gives all zeros."""
    peak = int(ink.max())
    if peak < MIN_INK:
        return np.zeros((SIDE, SIDE), np.uint8)
    mask = ink > peak * INK_FRACTION
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    patch = scale_to_fit(ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], BOX)
    top_peak = int(patch.max())
    if top_peak == 0:
        return np.zeros((SIDE, SIDE), np.uint8)
    if top_peak != 255:
        patch = (patch * np.float32(255 / top_peak) + np.float32(0.5)).astype(np.uint8)
    height, width = patch.shape
    by_row = patch.sum(axis=1, dtype=np.float64)
    total = float(by_row.sum())
    centre_y = float(by_row @ np.arange(height)) / total
    centre_x = float(patch.sum(axis=0, dtype=np.float64) @ np.arange(width)) / total
    top = min(max(round(SIDE / 2 - centre_y), 0), SIDE - height)
    left = min(max(round(SIDE / 2 - centre_x), 0), SIDE - width)
    out = np.zeros((SIDE, SIDE), np.uint8)
    out[top:top + height, left:left + width] = patch
    return out


def fit(ink: np.ndarray, side: int) -> np.ndarray:
    """The whole picture scaled to fit side x side keeping its aspect, centred on zeros."""
    patch = scale_to_fit(ink, side)
    height, width = patch.shape
    out = np.zeros((side, side), np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    out[top:top + height, left:left + width] = patch
    return out


def scale_to_fit(image: np.ndarray, side: int) -> np.ndarray:
    """Resize so the longer edge is `side`, anti-aliased as MNIST's grey levels suggest (Lanczos;
    a big picture is first box-reduced by an integer factor, 5x cheaper and as smooth); a
    picture already that size is returned as it is."""
    height, width = image.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return image
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(resized)
