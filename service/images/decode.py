"""Encoded PNG/JPEG bytes -> uint8 grayscale pixels, refusing anything unsafe or ambiguous.

Every refusal is a 4xx that names the image (`where`, e.g. "instances[2]"); nothing a client
sends reaches a 500. Pillow is asked for PNG and JPEG only (no other decoder ever runs on
client bytes), the size in the header is checked before any pixel is decoded (a 100-byte PNG
can claim 10^9 pixels), and pictures whose meaning is unclear are refused rather than guessed:
animations (which frame?), transparency (on what background?), 16-bit samples.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.errors import InvalidInput, ServiceError

FORMATS = ("PNG", "JPEG")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OTHER_FORMATS = (  # magic bytes -> name, so a refusal says what was sent
    (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"), (b"\x00\x00\x01\x00", "ICO"), (b"<svg", "SVG"), (b"<?xml", "XML/SVG"),
)
OPAQUE_MODES = {"1", "L", "P", "RGB", "CMYK", "YCbCr"}
ALPHA_MODES = {"LA", "RGBA", "PA", "La", "RGBa"}
DATA_URL_MARK = ";base64,"
DRAFT_SIDE = 256  # big JPEGs decode at 1/2..1/8 scale (DCT scaling), still >= this per side


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Per-image caps (MLP_MAX_IMAGE_BYTES, MLP_MAX_IMAGE_PIXELS)."""

    max_bytes: int
    max_pixels: int


class ImageTooLarge(ServiceError):
    """An image over the byte or pixel cap (413)."""

    status_code = 413


def from_base64(text: object, where: str) -> bytes:
    """The bytes of a base64 string (a `data:image/...;base64,` URL prefix is allowed)."""
    if not isinstance(text, str):
        raise InvalidInput(f"{where}: expected a base64 string of PNG or JPEG bytes, got "
                           f"{type(text).__name__}")
    head, mark, tail = text[:64].partition(DATA_URL_MARK)
    if mark and head.startswith("data:"):
        text = tail + text[64:]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: not valid base64 (expected the base64 of a PNG or JPEG "
                           "file)") from None


def decode(data: bytes, where: str, limits: ImageLimits) -> np.ndarray:
    """uint8 [H, W] grayscale pixels of one PNG or JPEG file."""
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"{where}: {len(data)} bytes, over the limit of {limits.max_bytes} "
                            "bytes per image (MLP_MAX_IMAGE_BYTES)")
    if not data:
        raise InvalidInput(f"{where}: empty; expected PNG or JPEG bytes")
    image = _open(data, where, limits)
    _check_kind(image, data, where)
    if image.format == "JPEG" and min(image.size) > 2 * DRAFT_SIDE:
        image.draft("L", (DRAFT_SIDE, DRAFT_SIDE))
    try:
        image.load()
    except Exception as error:  # Pillow raises many types on bad bytes
        raise InvalidInput(f"{where}: corrupt {image.format} data ({_reason(error)})") from None
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        image = _drop_opaque_alpha(image, where)
    return np.asarray(image if image.mode == "L" else image.convert("L"))


def _open(data: bytes, where: str, limits: ImageLimits) -> Image.Image:
    """Read the header only, and refuse a size over the cap before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"{where}: its header claims a huge size; at most "
                            f"{limits.max_pixels} pixels per image (MLP_MAX_IMAGE_PIXELS)"
                            ) from None
    except Exception as error:  # Pillow raises many types on bad bytes
        raise InvalidInput(f"{where}: {_describe_unreadable(data, error)}") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(f"{where}: {width}x{height} = {width * height} pixels, over the "
                            f"limit of {limits.max_pixels} pixels per image "
                            "(MLP_MAX_IMAGE_PIXELS)")
    if width < 1 or height < 1:
        raise InvalidInput(f"{where}: the image is {width}x{height} pixels")
    return image


def _check_kind(image: Image.Image, data: bytes, where: str) -> None:
    """Refuse animations, 16-bit or float samples and modes with no clear grey level."""
    frames = getattr(image, "n_frames", 1)
    if getattr(image, "is_animated", False) or frames != 1:
        raise InvalidInput(f"{where}: an animated {image.format} ({frames} frames); send one "
                           "still image")
    if image.format == "PNG" and data[:8] == PNG_SIGNATURE and len(data) > 24 and data[24] == 16:
        raise InvalidInput(f"{where}: a 16-bit PNG; save it with 8 bits per sample")
    if image.mode not in OPAQUE_MODES | ALPHA_MODES:
        raise InvalidInput(f"{where}: pixel mode {image.mode!r} ({image.format}) is not "
                           "supported; send 8-bit grayscale or RGB")


def _drop_opaque_alpha(image: Image.Image, where: str) -> Image.Image:
    """The image without its alpha channel when every pixel is opaque (a canvas export);
    transparency itself is refused: the grey level under it depends on an unknown background."""
    if image.mode not in ("LA", "RGBA"):
        image = image.convert("RGBA")  # palette or tRNS transparency, premultiplied modes
    if int(np.asarray(image)[..., -1].min()) < 255:
        raise InvalidInput(f"{where}: has transparent pixels (alpha channel); flatten it onto "
                           "a solid background and send it again")
    return image.convert("L")


def _describe_unreadable(data: bytes, error: Exception) -> str:
    for magic, name in OTHER_FORMATS:
        if data.startswith(magic):
            return f"a {name} file; send PNG or JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP file; send PNG or JPEG"
    if data.startswith(PNG_SIGNATURE) or data.startswith(b"\xff\xd8"):
        kind = "PNG" if data.startswith(PNG_SIGNATURE) else "JPEG"
        return f"corrupt {kind} data ({_reason(error)})"
    return "not a PNG or JPEG file"


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:120]
