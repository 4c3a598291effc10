"""Real MNIST test digits, as pixel rows, 28x28 PNGs and thick-stroke drawings.

A drawing is what a person makes on the page's 280x280 canvas: dark ink on white, a round pen
20 px wide. `strokes` turns a real digit into pen strokes (one per horizontal run of ink in
each pixel row, scaled 10x), so the accuracy test and the browser test draw the same way.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from training.data import load_dataset

SCALE = 10  # 28 px -> the page's 280 px canvas
PEN = 20  # the page's pen width
INK = 128  # pixels at least this bright become pen strokes

Stroke = tuple[tuple[float, float], tuple[float, float]]


def mnist_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,000 test digits of mnist-5k (uint8 [N, 784]) and their labels."""
    data = load_dataset("mnist-5k")
    return data.x_test.reshape(-1, 784).astype(np.uint8), data.y_test


def strokes(row: np.ndarray) -> list[Stroke]:
    """Pen strokes in canvas pixels: each run of ink in each pixel row, left to right."""
    digit = row.reshape(28, 28) >= INK
    found = []
    for y in range(28):
        x = 0
        while x < 28:
            if digit[y, x]:
                start = x
                while x < 28 and digit[y, x]:
                    x += 1
                centre = (y + 0.5) * SCALE
                found.append((((start + 0.5) * SCALE, centre), ((x - 0.5) * SCALE, centre)))
            x += 1
    return found


def drawing(row: np.ndarray) -> Image.Image:
    """The digit drawn with a round 20 px pen, black on a white 280x280 canvas."""
    image = Image.new("L", (28 * SCALE, 28 * SCALE), 255)
    pen = ImageDraw.Draw(image)
    radius = PEN / 2
    for (x0, y0), (x1, y1) in strokes(row):
        pen.line([(x0, y0), (x1, y1)], fill=0, width=PEN)
        for x, y in ((x0, y0), (x1, y1)):
            pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=0)
    return image


def png(image: Image.Image | np.ndarray) -> bytes:
    """PNG bytes of a Pillow image or a uint8 [28, 28] / [784] array."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.reshape(28, 28).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
