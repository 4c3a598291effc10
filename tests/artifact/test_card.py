"""Reading model.json and checking model.onnx against it, on a real tiny ONNX model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifact.card import card_labels, check_identity, read_card, read_verified_onnx
from artifact.names import ArtifactError
from tests.service.model_repo import write_model


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_model(tmp_path, "mnist-mlp", 3)


def test_a_published_version_passes_every_check(folder: Path) -> None:
    card = read_card(folder)
    check_identity(card, "mnist-mlp", 3)
    assert read_verified_onnx(folder, card) == (folder / "model.onnx").read_bytes()
    assert card_labels(card) == [str(i) for i in range(10)]


@pytest.mark.parametrize(("content", "message"), [
    (b"{", "model.json is not valid JSON (Expecting property name enclosed in double quotes"),
    (b'{"onnx": {"sha256": NaN}}', "model.json is not valid JSON (NaN is not a JSON value)"),
    (b"\xff", "model.json is not valid JSON ("),
    (b"[]", "model.json has no 'onnx' object"),
    (b'{"onnx": "model.onnx"}', "model.json has no 'onnx' object"),
])
def test_unreadable_cards(folder: Path, content: bytes, message: str) -> None:
    (folder / "model.json").write_bytes(content)
    with pytest.raises(ArtifactError) as error:
        read_card(folder)
    assert str(error.value).startswith(message)


def test_missing_files(folder: Path) -> None:
    card = read_card(folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"^model\.onnx is missing$"):
        read_verified_onnx(folder, card)
    (folder / "model.json").unlink()
    with pytest.raises(ArtifactError, match=r"^model\.json is missing$"):
        read_card(folder)


def test_identity_must_match_the_folder(folder: Path) -> None:
    card = read_card(folder)
    with pytest.raises(ArtifactError, match="names model 'mnist-mlp' version 3, not the "
                                            "folder's 'other' version 3"):
        check_identity(card, "other", 3)
    with pytest.raises(ArtifactError, match="schema_version is 2, expected 1"):
        check_identity({**card, "schema_version": 2}, "mnist-mlp", 3)


def test_a_changed_onnx_file_is_refused(folder: Path) -> None:
    card = read_card(folder)
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match=r"^sha256 of model\.onnx is [0-9a-f]{64} but "
                                            r"model\.json says '[0-9a-f]{64}'; the file is "
                                            "corrupt or was replaced$"):
        read_verified_onnx(folder, card)


def test_only_model_onnx_is_ever_read(folder: Path) -> None:
    card = json.loads((folder / "model.json").read_text())
    card["onnx"]["file"] = "model.pkl"
    with pytest.raises(ArtifactError, match=r"onnx\.file is 'model\.pkl'; only 'model\.onnx'"):
        read_verified_onnx(folder, card)


@pytest.mark.parametrize("labels", ["0123456789", [0, 1], None])
def test_labels_are_a_list_of_strings(labels: object) -> None:
    with pytest.raises(ArtifactError, match="labels must be a list of strings"):
        card_labels({"labels": labels})
