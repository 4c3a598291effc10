"""MNIST's recipe redone on any picture: polarity, crop, fit 20x20, centre of mass, 0..255."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.images.normalize import MNIST_CENTRED, RESIZE_ONLY, to_input
from tests.service.images.pictures import drawing


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    mass = image.astype(np.float64)
    return float((mass * ys).sum() / mass.sum()), float((mass * xs).sum() / mass.sum())


def ink_box(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(image)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_a_large_dark_on_light_drawing_becomes_an_mnist_digit() -> None:
    out = to_input(np.asarray(drawing(280)), MNIST_CENTRED)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out.max() == 255 and out[0].max() == out[:, 0].max() == 0  # light ink, dark border
    assert max(ink_box(out)) == 20
    centre_y, centre_x = centre_of_mass(out)
    assert abs(centre_y - 14) <= 0.5 and abs(centre_x - 14) <= 0.5


def test_polarity_does_not_matter() -> None:
    picture = np.asarray(drawing(140))
    assert np.array_equal(to_input(picture, MNIST_CENTRED), to_input(255 - picture, MNIST_CENTRED))


def test_a_grey_background_counts_as_background() -> None:
    picture = np.asarray(drawing(140)).astype(np.int16)
    dimmed = (picture * 0.6 + 60).astype(np.uint8)  # grey paper (213), dark grey ink (60)
    out = to_input(dimmed, MNIST_CENTRED)
    assert out[0].max() == 0 and out.max() == 255
    assert np.abs(out.astype(int) - to_input(picture.astype(np.uint8), MNIST_CENTRED)).max() <= 40


def test_aspect_ratio_is_kept() -> None:
    bar = np.zeros((300, 300), np.uint8)
    bar[50:250, 140:160] = 255  # 200 tall, 20 wide
    assert ink_box(to_input(bar, MNIST_CENTRED)) == (20, 2)


def test_a_blank_picture_is_all_zeros() -> None:
    assert not to_input(np.full((50, 40), 255, np.uint8), MNIST_CENTRED).any()
    assert not to_input(np.full((50, 40), 3, np.uint8), MNIST_CENTRED).any()


def test_resize_only_keeps_a_28x28_item_as_it_is() -> None:
    item = np.zeros((28, 28), np.uint8)
    item[3:25, 6:22] = np.arange(22 * 16, dtype=np.uint8).reshape(22, 16)
    assert np.array_equal(to_input(item, RESIZE_ONLY), item)


def test_resize_only_fits_the_whole_picture() -> None:
    wide = np.zeros((56, 112), np.uint8)
    wide[20:36, 10:100] = 200
    out = to_input(wide, RESIZE_ONLY)
    assert out.shape == (28, 28)
    assert out[:7].max() == 0 and out[21:].max() == 0  # 56x112 -> 14x28, centred
    assert out[13:15, 4:24].min() >= 150  # rows 20..36 -> 12..16, columns 10..100 -> 3..25


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown image normalization 'sharpen'"):
        to_input(np.zeros((28, 28), np.uint8), "sharpen")


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(0, 2**32 - 1),
       st.sampled_from([MNIST_CENTRED, RESIZE_ONLY]))
def test_fuzz_any_picture_gives_a_28x28_input(height: int, width: int, seed: int,
                                              method: str) -> None:
    rng = np.random.default_rng(seed)
    picture = rng.integers(0, 256, (height, width), dtype=np.uint8)
    picture[rng.random((height, width)) < rng.random()] = rng.integers(0, 256)  # a background
    out = to_input(picture, method)
    assert out.shape == (28, 28) and out.dtype == np.uint8
