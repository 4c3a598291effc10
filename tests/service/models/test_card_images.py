"""model.json's optional image_normalization: read, defaulted for older cards, checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ModelLoadError
from service.models.repository import ModelRepository
from tests.service.http.test_images import with_normalization
from tests.service.model_repo import write_model


@pytest.mark.parametrize(("value", "read"), [("mnist-centred", "mnist-centred"),
                                             ("resize-only", "resize-only"), ("none", "none"),
                                             (None, "resize-only")])
def test_the_card_names_the_normalization(tmp_path: Path, value: str | None, read: str) -> None:
    with_normalization(write_model(tmp_path, "m", 1), value)
    assert ModelRepository(tmp_path).load("m").normalization == read


def test_an_unknown_normalization_refuses_the_version(tmp_path: Path) -> None:
    folder = with_normalization(write_model(tmp_path, "m", 1), "sharpen")
    with pytest.raises(ModelLoadError) as caught:
        ModelRepository(tmp_path).load("m")
    assert caught.value.message == (
        f"model 'm' version 1 ({folder}): model.json image_normalization is 'sharpen'; expected "
        "one of ['mnist-centred', 'resize-only', 'none']")
