"""Decoding client bytes: what is accepted, and a clear 4xx naming the image for the rest."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.errors import ServiceError
from service.images.decode import ImageLimits, decode, from_base64
from tests.service.images.pictures import drawing, encode, png_claiming

LIMITS = ImageLimits(max_bytes=200_000, max_pixels=1_000_000)
WHERE = "instances[3]"


def refusal(data: bytes, limits: ImageLimits = LIMITS) -> tuple[int, str]:
    with pytest.raises(ServiceError) as caught:
        decode(data, WHERE, limits)
    return caught.value.status_code, caught.value.message


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "1", "RGBA", "LA", "CMYK"])
def test_opaque_pictures_of_every_common_mode_decode_to_the_same_grey(mode: str) -> None:
    picture = drawing(56)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    gray = decode(encode(picture.convert(mode), fmt), WHERE, LIMITS)
    assert gray.shape == (56, 56) and gray.dtype == np.uint8
    tolerance = 40 if fmt == "JPEG" else 1
    assert np.abs(gray.astype(int) - np.asarray(picture).astype(int)).mean() < tolerance


def test_jpeg_decodes() -> None:
    gray = decode(encode(drawing(100).convert("RGB"), "JPEG", quality=90), WHERE, LIMITS)
    assert gray.shape == (100, 100) and gray[0, 0] > 240 and gray.min() < 20


def test_a_big_jpeg_is_decoded_at_a_reduced_scale() -> None:
    big = decode(encode(drawing(900), "JPEG"), WHERE, LIMITS)
    assert 256 <= big.shape[0] < 900 and big.shape[0] == big.shape[1]


def test_transparent_pixels_are_refused() -> None:
    picture = drawing(40).convert("RGBA")
    picture.putpixel((0, 0), (255, 255, 255, 0))
    assert refusal(encode(picture)) == (400, "instances[3]: has transparent pixels (alpha "
                                        "channel); flatten it onto a solid background and "
                                        "send it again")


def test_palette_transparency_is_refused() -> None:
    picture = drawing(40).convert("P")
    assert refusal(encode(picture, transparency=0))[0] == 400


def test_16_bit_png_is_refused() -> None:
    deep = Image.fromarray(np.full((8, 8), 40_000, np.uint16))
    assert refusal(encode(deep)) == (400, "instances[3]: a 16-bit PNG; save it with 8 bits "
                                     "per sample")


def test_animated_png_is_refused() -> None:
    first, second = drawing(20), drawing(20).rotate(90)
    data = encode(first, save_all=True, append_images=[second])
    assert refusal(data) == (400, "instances[3]: an animated PNG (2 frames); send one still "
                             "image")


@pytest.mark.parametrize(("fmt", "name"), [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF"),
                                           ("WEBP", "WebP")])
def test_other_formats_are_named_and_refused(fmt: str, name: str) -> None:
    assert refusal(encode(drawing(20), fmt)) == (400, f"instances[3]: a {name} file; send PNG "
                                                 "or JPEG")


def test_text_is_not_an_image() -> None:
    assert refusal(b"hello") == (400, "instances[3]: not a PNG or JPEG file")
    assert refusal(b"") == (400, "instances[3]: empty; expected PNG or JPEG bytes")


def test_truncated_png_is_corrupt() -> None:
    data = encode(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    status, message = refusal(data[: len(data) // 2])
    assert status == 400 and message.startswith("instances[3]: corrupt PNG data (")


def test_too_many_bytes_is_413() -> None:
    data = encode(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    assert refusal(data, ImageLimits(1000, 10**6)) == (
        413, f"instances[3]: {len(data)} bytes, over the limit of 1000 bytes per image "
        "(MLP_MAX_IMAGE_BYTES)")


def test_a_header_claiming_too_many_pixels_is_413_before_decoding() -> None:
    assert refusal(png_claiming(2000, 1000)) == (
        413, "instances[3]: 2000x1000 = 2000000 pixels, over the limit of 1000000 pixels per "
        "image (MLP_MAX_IMAGE_PIXELS)")


def test_a_decompression_bomb_header_is_413() -> None:
    status, message = refusal(png_claiming(60_000, 60_000))  # 3.6e9 pixels, Pillow's own alarm
    assert status == 413 and "at most 1000000 pixels per image" in message


def test_base64_and_data_urls() -> None:
    data = encode(drawing(20))
    text = base64.b64encode(data).decode()
    assert from_base64(text, WHERE) == data
    assert from_base64("data:image/png;base64," + text, WHERE) == data
    with pytest.raises(ServiceError, match=r"^instances\[3\]: not valid base64"):
        from_base64("not base64!", WHERE)
    with pytest.raises(ServiceError, match=r"^instances\[3\]: expected a base64 string of PNG "
                                           r"or JPEG bytes, got int"):
        from_base64(7, WHERE)


SEEDS = [encode(drawing(30)), encode(drawing(30).convert("RGB"), "JPEG"),
         encode(drawing(30).convert("RGBA")), encode(drawing(30).convert("P"))]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid PNG/JPEG with some bytes overwritten, cut short or extended."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=20))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(damaged(), st.binary(max_size=200)))
def test_fuzz_any_bytes_give_pixels_or_a_4xx_naming_the_image(data: bytes) -> None:
    try:
        gray = decode(data, WHERE, LIMITS)
    except ServiceError as error:
        assert 400 <= error.status_code < 500
        assert error.message.startswith("instances[3]: ")
    else:
        assert gray.dtype == np.uint8 and gray.ndim == 2 and min(gray.shape) >= 1
