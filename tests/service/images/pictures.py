"""Encode test pictures as PNG/JPEG bytes with Pillow (shared by the image tests)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image, ImageDraw


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **options: Any) -> bytes:
    """The bytes of `image` (a Pillow image or a uint8 array) saved as `fmt`."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def drawing(size: int = 280, width: int = 22, mode: str = "L") -> Image.Image:
    """A '7' drawn dark on light with a thick stroke, as a person draws on a canvas."""
    image = Image.new(mode, (size, size), "white")
    scale = size / 280
    points = [(70 * scale, 60 * scale), (210 * scale, 60 * scale), (120 * scale, 230 * scale)]
    ImageDraw.Draw(image).line(points, fill="black", width=round(width * scale), joint="curve")
    return image


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (its data is one short row)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
