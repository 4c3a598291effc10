"""Verification of versions on disk: sha256, card identity, signature, labels, names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from service.errors import InvalidInput, ModelLoadError, ModelNotFound
from service.models.repository import ModelRepository, check_name, parse_version
from tests.service.conftest import MODEL, pixels, reference
from tests.service.model_repo import card, write_model


def edit_card(folder: Path, **changes: object) -> None:
    data = json.loads((folder / "model.json").read_text())
    data.update(changes)
    (folder / "model.json").write_text(json.dumps(data))


def test_loads_latest_and_runs_like_onnxruntime(repo: Path) -> None:
    repository = ModelRepository(repo)
    model = repository.load(MODEL)
    assert (model.name, model.version, len(model.labels)) == (MODEL, 2, 10)
    rows = pixels(3)
    outputs = model.run(rows)
    np.testing.assert_allclose(outputs["probabilities"],
                               reference(repo / MODEL / "2", rows)["probabilities"], rtol=1e-6)
    assert repository.versions(MODEL) == [1, 2]


def test_ignores_hidden_and_non_integer_entries(repo: Path) -> None:
    for entry in (".tmp-3-abc", "03", "latest", "0"):
        (repo / MODEL / entry).mkdir()
    (repo / "Bad Name").mkdir()
    (repo / "empty").mkdir()
    repository = ModelRepository(repo)
    assert repository.versions(MODEL) == [1, 2]
    assert repository.model_names() == [MODEL]


def where(repo: Path, version: int = 1) -> str:
    return f"model 'mnist-mlp' version {version} ({repo / MODEL / str(version)})"


def test_sha256_mismatch_names_the_file(repo: Path) -> None:
    folder = repo / MODEL / "1"
    edit_card(folder, onnx={"file": "model.onnx", "sha256": "0" * 64})
    with pytest.raises(ModelLoadError) as error:
        ModelRepository(repo).load(MODEL, 1)
    assert str(error.value).startswith(f"{where(repo)}: sha256 of model.onnx is ")
    assert str(error.value).endswith(f"but model.json says '{'0' * 64}'; the file is corrupt "
                                     "or was replaced")


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "other"}, "model.json names model 'other' version 1, not the folder's "
     "'mnist-mlp' version 1"),
    ({"version": 2}, "model.json names model 'mnist-mlp' version 2, not the folder's "
     "'mnist-mlp' version 1"),
    ({"schema_version": 2}, "model.json schema_version is 2, expected 1"),
    ({"labels": ["a", "b"]}, "model.json has 2 labels but the model outputs 10 classes"),
    ({"labels": "0123456789"}, "model.json labels must be a list of strings"),
    ({"onnx": {"file": "model.pkl", "sha256": "x"}},
     "model.json onnx.file is 'model.pkl'; only 'model.onnx' is loaded"),
    ({"onnx": 5}, "model.json has no 'onnx' object"),
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 784]}]},
     "model.json inputs [('pixels', 'FP32', (-1, 784))] do not match model.onnx "
     "[('input', 'FP32', (-1, 784))]"),
])
def test_card_problems_are_refused(repo: Path, changes: dict[str, object], message: str) -> None:
    edit_card(repo / MODEL / "1", **changes)
    with pytest.raises(ModelLoadError) as error:
        ModelRepository(repo).load(MODEL, 1)
    assert str(error.value) == f"{where(repo)}: {message}"


def test_missing_files(repo: Path) -> None:
    (repo / MODEL / "1" / "model.json").unlink()
    (repo / MODEL / "2" / "model.onnx").unlink()
    repository = ModelRepository(repo)
    with pytest.raises(ModelLoadError, match=r"model\.json is missing$"):
        repository.load(MODEL, 1)
    with pytest.raises(ModelLoadError, match=r"model\.onnx is missing$"):
        repository.load(MODEL, 2)


def test_not_onnx_at_all(repo: Path) -> None:
    folder = repo / MODEL / "1"
    (folder / "model.onnx").write_bytes(b"not a model")
    (folder / "model.json").write_text(json.dumps(card(MODEL, 1, b"not a model", 10)))
    with pytest.raises(ModelLoadError) as error:
        ModelRepository(repo).load(MODEL, 1)
    assert str(error.value).startswith(f"{where(repo)}: onnxruntime cannot load model.onnx: ")


def write_graph(folder: Path, graph: onnx.GraphProto) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    data = model.SerializeToString()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(data)
    (folder / "model.json").write_text(json.dumps(card(MODEL, 1, data, 10)))


def test_signature_that_breaks_the_contract(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["probabilities"]),
         helper.make_node("Identity", ["pixels"], ["label"])], "wrong",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 10])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10]),
         helper.make_tensor_value_info("label", TensorProto.FLOAT, ["batch", 10])])
    write_graph(tmp_path / MODEL / "1", graph)
    with pytest.raises(ModelLoadError) as error:
        ModelRepository(tmp_path).load(MODEL, 1)
    assert str(error.value) == (
        f"{where(tmp_path)}: model.onnx does not follow the artifact contract: inputs are "
        "pixels FP32 [-1, 10], expected input FP32 [-1, 784]; outputs are probabilities FP32 "
        "[-1, 10], label FP32 [-1, 10], expected label INT64 [-1]")


def test_unknown_model_and_version(repo: Path) -> None:
    repository = ModelRepository(repo)
    with pytest.raises(ModelNotFound, match="model 'nope' is not loaded; no versions in "):
        repository.load("nope")
    with pytest.raises(ModelNotFound, match="model 'mnist-mlp' version 7 is not loaded; no "):
        repository.load(MODEL, 7)
    with pytest.raises(ModelLoadError, match="is not a folder"):
        ModelRepository(repo / "missing").check()


@pytest.mark.parametrize("name", ["..", "a..b", "../etc", "/etc", "a/b", "Upper", "-x", "",
                                  "x" * 65, ".hidden"])
def test_bad_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidInput, match="is invalid"):
        check_name(name)


@pytest.mark.parametrize("text", ["0", "-1", "01", "1.0", "../1", "/1", "", "abc", "9" * 19])
def test_bad_versions_are_rejected(text: str) -> None:
    with pytest.raises(InvalidInput, match="expected a positive integer"):
        parse_version(text)


def test_good_names_and_versions() -> None:
    assert check_name("mnist-mlp.v2_a") == "mnist-mlp.v2_a"
    assert parse_version("12") == 12 and parse_version(3) == 3


def test_two_models(tmp_path: Path) -> None:
    write_model(tmp_path, "a", 1)
    write_model(tmp_path, "b", 5, classes=3)
    repository = ModelRepository(tmp_path)
    assert repository.model_names() == ["a", "b"]
    assert repository.load("b").labels == ("0", "1", "2")
