"""The ONNX file matches docs/artifact.md and agrees with torch; disagreement stops the export."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.training.synthetic import make_dataset
from training.export import ExportError, check_parity, stamp_version, to_onnx
from training.model import MLP, MLPConfig

LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def model() -> MLP:
    torch.manual_seed(0)
    return MLP(MLPConfig(classes=3, hidden_sizes=[16, 8], activation="gelu", dropout=0.3,
                         pixel_mean=100.0, pixel_std=60.0)).eval()


@pytest.fixture(scope="module")
def onnx_file(model: MLP, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    path = folder / "model.onnx"
    path.write_bytes(stamp_version(to_onnx(model, name="tiny", labels=LABELS), 4))
    return path


def test_single_self_contained_file_passes_the_full_checker(onnx_file: Path) -> None:
    assert [p.name for p in onnx_file.parent.iterdir()] == ["model.onnx"]
    proto = onnx.load(str(onnx_file), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t)
                   for t in onnx.external_data_helper._get_all_tensors(proto))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18


def test_names_dtypes_and_dynamic_batch(onnx_file: Path) -> None:
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert (given.name, given.type, given.shape) == ("input", "tensor(float)", ["batch", 784])
    outputs = {o.name: (o.type, o.shape) for o in session.get_outputs()}
    assert outputs == {"probabilities": ("tensor(float)", ["batch", 3]),
                       "label": ("tensor(int64)", ["batch"])}
    for rows in (1, 7):
        x = np.random.default_rng(rows).uniform(0, 255, (rows, 784)).astype(np.float32)
        probabilities, labels = session.run(["probabilities", "label"], {"input": x})
        assert probabilities.shape == (rows, 3) and probabilities.dtype == np.float32
        assert labels.shape == (rows,) and labels.dtype == np.int64
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        assert np.array_equal(labels, probabilities.argmax(axis=1))


def test_metadata_describes_the_model(onnx_file: Path, model: MLP) -> None:
    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert props["name"] == "tiny"
    assert props["version"] == "4"
    assert json.loads(props["labels"]) == LABELS
    assert props["input_range"] == "0,255"
    assert props["producer"] == "mlp-serve"
    assert json.loads(props["model_config"])["hidden_sizes"] == [16, 8]


def test_preprocessing_travels_in_the_graph(onnx_file: Path, model: MLP) -> None:
    """Raw pixels in, same probabilities as torch: no scaling left for the service to do."""
    x = make_dataset(n_train=3, n_test=50).x_test
    report = check_parity(onnx_file.read_bytes(), model, x)
    assert report.rows == 50 and report.argmax_agreement == 1.0
    assert report.max_abs_diff <= 1e-5


def test_parity_failure_names_both_numbers(onnx_file: Path, model: MLP) -> None:
    drifted = MLP(model.config)
    drifted.load_state_dict(model.state_dict())
    with torch.no_grad():
        drifted.layers[-1].bias += torch.tensor([3.0, 0.0, 0.0])
    x = make_dataset(n_train=3, n_test=40).x_test
    with pytest.raises(ExportError, match=r"max \|probability difference\| \d.* \(limit 1e-05\), "
                       r"argmax agreement 0\.\d+ \(required 1\.0\)"):
        check_parity(onnx_file.read_bytes(), drifted.eval(), x)


def test_label_count_must_match_classes(model: MLP) -> None:
    with pytest.raises(ExportError, match="2 labels given for a model with 3 classes"):
        to_onnx(model, name="tiny", labels=["a", "b"])
