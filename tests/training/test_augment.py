"""Per-image shifts (augment_shift_mode = "image"): each image moves on its own, within the
limit, with background filling in; row order kept; the same seed draws the same shifts."""

from pathlib import Path

import pytest
import torch

from tests.training.synthetic import fast_config, make_dataset, single_thread  # noqa: F401
from tests.training.test_fit import train
from training.augment import shift_each_image

pytestmark = pytest.mark.usefixtures("single_thread")


def moved(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference: the 28x28 `image` moved down dy and right dx, zeros coming in at the edge."""
    out = torch.zeros_like(image)
    out[max(dy, 0) : 28 + min(dy, 0), max(dx, 0) : 28 + min(dx, 0)] = (
        image[max(-dy, 0) : 28 + min(-dy, 0), max(-dx, 0) : 28 + min(-dx, 0)])
    return out


def blocks(count: int) -> torch.Tensor:
    """Image i holds one 3x4 block of value i + 1 in the middle, so rows can be told apart."""
    images = torch.zeros(count, 28, 28)
    for i in range(count):
        images[i, 12:15, 11:15] = i + 1
    return images


def test_every_image_moves_by_its_own_shift_within_the_limit() -> None:
    images = blocks(64)
    shifted = shift_each_image(images.reshape(64, 784), 2, torch.Generator().manual_seed(0))
    assert shifted.shape == (64, 784)
    shifts = set()
    for i, out in enumerate(shifted.view(64, 28, 28)):
        rows, cols = torch.nonzero(out, as_tuple=True)
        dy, dx = int(rows.min()) - 12, int(cols.min()) - 11
        assert max(abs(dy), abs(dx)) <= 2
        assert torch.equal(out, moved(images[i], dy, dx)), i  # row i is still image i, moved
        shifts.add((dy, dx))
    assert len(shifts) >= 15  # of 25 possible: per image, not one shift for the batch


def test_pixels_moved_past_the_edge_are_dropped_and_background_comes_in() -> None:
    full = torch.full((200, 784), 255.0)
    shifted = shift_each_image(full, 1, torch.Generator().manual_seed(1)).view(200, 28, 28)
    kept = (shifted == 255).sum((1, 2))
    assert set(kept.tolist()) <= {28 * 28, 28 * 27, 27 * 27}  # no move, one axis, both axes
    assert bool(((shifted == 0) | (shifted == 255)).all())
    assert {28 * 28, 28 * 27, 27 * 27} == set(kept.tolist())


def test_same_seed_draws_the_same_shifts() -> None:
    images = blocks(32).reshape(32, 784)
    first = shift_each_image(images, 2, torch.Generator().manual_seed(7))
    again = shift_each_image(images, 2, torch.Generator().manual_seed(7))
    other = shift_each_image(images, 2, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_uint8_rows_shift_to_the_same_pixels_as_float_rows() -> None:
    """fit() shifts the uint8 batch before casting it: the same pixels, a quarter the bytes."""
    rows = torch.randint(0, 256, (300, 784), dtype=torch.uint8)
    for limit in (1, 2):
        as_bytes = shift_each_image(rows, limit, torch.Generator().manual_seed(limit))
        as_floats = shift_each_image(rows.float(), limit, torch.Generator().manual_seed(limit))
        assert as_bytes.dtype == torch.uint8 and as_floats.dtype == torch.float32
        assert torch.equal(as_bytes.float(), as_floats)
        assert not torch.equal(as_bytes, rows)


def test_training_with_per_image_shifts_is_reproducible(tmp_path: Path) -> None:
    config = fast_config(tmp_path, epochs=2, augment_shift=1, augment_shift_mode="image")
    data = make_dataset()
    first, _, _ = train(config, data)
    second, _, _ = train(config, data)
    per_batch, _, _ = train(config.model_copy(update={"augment_shift_mode": "batch"}), data)
    for key, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[key]), key
    assert not torch.equal(first.state_dict()["layers.1.weight"],
                           per_batch.state_dict()["layers.1.weight"])
