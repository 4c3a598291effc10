"""INT8 variant of a small model trained on real digits (mnist-5k): published next to the float
model when within the margin, refused otherwise."""

import json
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.service.servers import ServerProcess
from tests.training.synthetic import fast_config, single_thread  # noqa: F401
from training.card import build_card
from training.data import Dataset, load_dataset
from training.export import to_onnx
from training.pipeline import RunResult, train_and_publish
from training.quantize import calibration_rows, publish_int8, quantize

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_dataset("mnist-5k")


@pytest.fixture(scope="module")
def run(data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    tmp = tmp_path_factory.mktemp("int8")
    config = fast_config(tmp, data="mnist-5k", hidden_sizes=[32], epochs=3, standardize=True,
                         int8=True, int8_calibration_rows=500, validation_fraction=0.05)
    return train_and_publish(config, quiet=True, dataset=data)


def test_variant_is_published_as_its_own_model(run: RunResult) -> None:
    assert run.int8 is not None and run.int8.published_dir is not None
    assert run.int8.published_dir == Path(run.config.repository) / "tiny-int8" / "1"
    assert sorted(p.name for p in run.int8.published_dir.iterdir()) == ["model.json",
                                                                       "model.onnx"]
    props = {p.key: p.value for p in
             onnx.load(str(run.int8.published_dir / "model.onnx")).metadata_props}
    assert (props["name"], props["version"]) == ("tiny-int8", "1")
    assert props["labels"] == json.dumps([str(d) for d in range(10)])


def test_card_compares_int8_with_float(run: RunResult, data: Dataset) -> None:
    assert run.int8 is not None and run.int8.published_dir is not None
    card = json.loads((run.int8.published_dir / "model.json").read_text())
    section = card["quantization"]
    assert card["name"] == "tiny-int8" and card["config"]["name"] == "tiny-int8"
    assert section["source"] == {"name": "tiny", "version": 1}
    assert section["format"] == "qdq" and section["calibration_rows"] == 500
    assert section["float_accuracy"] == run.test_accuracy
    assert section["float_accuracy"] - section["int8_accuracy"] <= 0.003 + 1e-9
    assert card["metrics"]["test_accuracy"] == section["int8_accuracy"]
    for key in ("float_latency_ms", "int8_latency_ms"):
        assert set(section[key]) == {"batch_1", "batch_256"}
        assert all(ms > 0 for ms in section[key].values())
    # the numbers on the card are what onnxruntime says about the two published files
    x = data.x_test.astype(np.float32)
    labels = {}
    for name, folder in (("float", run.published_dir), ("int8", run.int8.published_dir)):
        assert folder is not None
        session = ort.InferenceSession(str(folder / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        labels[name] = session.run(["label"], {"input": x})[0]
    assert section["int8_accuracy"] == pytest.approx((labels["int8"] == data.y_test).mean())
    assert section["argmax_agreement"] == pytest.approx((labels["int8"] == labels["float"]).mean())


def test_int8_graph_keeps_preprocessing_and_float_outputs(run: RunResult) -> None:
    assert run.int8 is not None and run.int8.published_dir is not None
    graph = onnx.load(str(run.int8.published_dir / "model.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert "QuantizeLinear" in ops and "Softmax" in ops and "ArgMax" in ops
    assert [i.name for i in graph.input] == ["input"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in graph.output] == ["probabilities", "label"]


def test_variant_losing_more_than_the_margin_is_not_published(
        run: RunResult, data: Dataset) -> None:
    # Calibrated on one black image, the input range has no room for ink: every digit's
    # strokes are clipped to background and accuracy collapses toward chance.
    proto = to_onnx(run.model, name="tiny", labels=list(data.class_names))
    config = run.config.model_copy(update={"name": "ruined"})
    card = partial(build_card, model=run.model, dataset=data, splits={}, fit_result=run.fit,
                   provenance={})
    result = publish_int8(config, proto, 1, np.zeros((1, 784), np.uint8), data, card)
    assert result.published_dir is None and not result.comparison.acceptable
    assert result.comparison.accuracy_drop > 0.003
    assert not (Path(run.config.repository) / "ruined-int8").exists()


def test_a_graph_without_node_names_gets_its_hidden_layer_quantized(run: RunResult,
                                                                   data: Dataset) -> None:
    # Hand-built graphs often leave node names empty; excluding the output layer by its (empty)
    # name once excluded every Gemm and the variant was float32 in disguise.
    proto = to_onnx(run.model, name="tiny", labels=list(data.class_names))
    for node in proto.graph.node:
        node.name = ""
    graph = quantize(proto, data.x_train[:200].astype(np.float32), "qdq", "tiny-int8").graph
    weights = {init.name: init for init in graph.initializer}
    int8_weights = [name for name, init in weights.items()
                    if init.data_type == onnx.TensorProto.INT8 and len(init.dims) == 2]
    assert len(int8_weights) == 1  # the hidden layer; the output layer stays float32
    gemms = [node for node in graph.node if node.op_type == "Gemm"]
    assert len(gemms) == 2 and all(node.name for node in graph.node)


def test_calibration_sample_is_fixed_by_the_seed() -> None:
    x = np.arange(50 * 784).reshape(50, 784)
    assert np.array_equal(calibration_rows(x, 10, 0), calibration_rows(x, 10, 0))
    assert not np.array_equal(calibration_rows(x, 10, 0), calibration_rows(x, 10, 1))
    assert calibration_rows(x, 80, 0) is x


def test_service_serves_the_variant_like_any_model(run: RunResult, data: Dataset) -> None:
    assert run.int8 is not None and run.int8.published_dir is not None
    server = ServerProcess(Path(run.config.repository), env={"MLP_CONTROL_ENABLED": "false",
                                                             "MLP_WORKERS": "1"})
    try:
        server.wait_ready()
        rows = data.x_test[:8].astype(np.float32)
        body = {"inputs": [{"name": "input", "shape": [8, 784], "datatype": "FP32",
                            "data": rows.ravel().tolist()}]}
        answer = httpx.post(f"{server.url}/v2/models/tiny-int8/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "1"
        outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        session = ort.InferenceSession(str(run.int8.published_dir / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        probabilities, labels = session.run(None, {"input": rows})
        assert outputs["label"] == labels.tolist()
        assert np.allclose(outputs["probabilities"], probabilities.ravel(), atol=1e-6)
    finally:
        server.stop()
