"""Write real tiny ONNX models that follow docs/artifact.md into a repository folder.

Reusable by any test (`from tests.service.model_repo import write_model`): a fixed random linear
layer + softmax + argmax, built with `onnx.helper` (no torch), with a model.json whose sha256 is
the file's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PIXELS = 784


def build_onnx(classes: int = 10, seed: int = 0, *, name: str = "mnist-mlp",
               version: int = 1) -> bytes:
    """Serialized model: probabilities = softmax(x/255 @ W + b), label = argmax."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.05, (PIXELS, classes)).astype(np.float32)
    bias = rng.normal(0, 0.1, classes).astype(np.float32)
    nodes = [
        helper.make_node("Div", ["input", "scale"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "weight"], ["matmul"]),
        helper.make_node("Add", ["matmul", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", PIXELS])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        initializer=[
            numpy_helper.from_array(np.array(255.0, dtype=np.float32), "scale"),
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="mlp-serve")
    model.ir_version = 10
    labels = [str(i) for i in range(classes)]
    helper.set_model_props(model, {"name": name, "version": str(version),
                                   "labels": json.dumps(labels), "input_range": "0,255",
                                   "producer": "mlp-serve"})
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def card(name: str, version: int, onnx_bytes: bytes, classes: int) -> dict[str, object]:
    """A schema_version 1 model.json for `onnx_bytes` (the fields the service reads, and more)."""
    return {
        "schema_version": 1,
        "name": name,
        "version": version,
        "created_at": "2026-11-29T02:30:00Z",
        "onnx": {"file": "model.onnx", "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
                 "opset": 18, "size_bytes": len(onnx_bytes)},
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, PIXELS], "range": [0, 255]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
                    {"name": "label", "datatype": "INT64", "shape": [-1]}],
        "labels": [str(i) for i in range(classes)],
        "metrics": {"test_accuracy": 0.5},
    }


def write_model(root: Path, name: str = "mnist-mlp", version: int = 1, *, classes: int = 10,
                seed: int | None = None) -> Path:
    """Publish one version under root/name/version and return its folder."""
    onnx_bytes = build_onnx(classes, version if seed is None else seed, name=name,
                            version=version)
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(onnx_bytes)
    (folder / "model.json").write_text(json.dumps(card(name, version, onnx_bytes, classes)))
    return folder
