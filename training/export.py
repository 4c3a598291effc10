"""ONNX export exactly as docs/artifact.md says, and the parity check that guards it."""

import json
import logging
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from training.evaluate import predict_probabilities
from training.model import MLP

OPSET = 18
MAX_ABS_DIFF = 1e-5
PRODUCER = "mlp-serve"


class ExportError(Exception):
    """The exported graph is wrong or disagrees with torch; nothing may be published."""


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    argmax_agreement: float


class Serving(nn.Module):
    """What the service runs: raw pixels -> (softmax probabilities, argmax label)."""

    def __init__(self, model: MLP) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = torch.softmax(self.model(input), dim=1)
        return probabilities, torch.argmax(probabilities, dim=1)


def to_onnx(model: MLP, *, name: str, labels: list[str], version: int = 0) -> onnx.ModelProto:
    """Trace `model` with the torch.export-based exporter and attach the metadata.

    version 0 means "not published yet"; publishing stamps the real number (`stamp_version`).
    """
    if len(labels) != model.config.classes:
        raise ExportError(
            f"{len(labels)} labels given for a model with {model.config.classes} classes"
        )
    serving = Serving(model).eval()
    sample = torch.zeros(2, model.config.inputs)
    with warnings.catch_warnings():
        # torch 2.13's own exporter internals call a pytree API torch itself deprecated; it is
        # not ours to fix and does not affect the graph.
        warnings.filterwarnings(
            "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
        )
        registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registration_log.level
        registration_log.setLevel(logging.ERROR)  # "torchvision is not installed" noise
        try:
            program = torch.onnx.export(
                serving, (sample,), input_names=["input"],
                output_names=["probabilities", "label"], opset_version=OPSET, dynamo=True,
                dynamic_shapes={"input": {0: torch.export.Dim("batch")}}, verbose=False,
            )
        finally:
            registration_log.setLevel(level)
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    proto = program.model_proto
    props = {
        "name": name,
        "version": str(version),
        "labels": json.dumps(labels),
        "input_range": "0,255",
        "producer": PRODUCER,
        "model_config": json.dumps(asdict(model.config)),
    }
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def stamp_version(proto: onnx.ModelProto, version: int) -> bytes:
    """Serialized copy of `proto` whose metadata says `version`: one self-contained file."""
    stamped = onnx.ModelProto()
    stamped.CopyFrom(proto)
    props = {p.key: p.value for p in stamped.metadata_props}
    props["version"] = str(version)
    onnx.helper.set_model_props(stamped, props)
    return stamped.SerializeToString()


def check_parity(onnx_bytes: bytes, model: MLP, x: np.ndarray) -> Parity:
    """Run every row of `x` through onnxruntime and torch; raise ExportError if they differ."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_probabilities, onnx_labels = session.run(None, {"input": x.astype(np.float32)})
    torch_probabilities = predict_probabilities(model, x)
    max_abs_diff = float(np.abs(onnx_probabilities - torch_probabilities).max())
    agreement = float((onnx_labels == torch_probabilities.argmax(axis=1)).mean())
    if not (max_abs_diff <= MAX_ABS_DIFF and agreement == 1.0):
        raise ExportError(
            f"ONNX export disagrees with torch on {len(x)} test rows: max |probability "
            f"difference| {max_abs_diff:.3g} (limit {MAX_ABS_DIFF:g}), argmax agreement "
            f"{agreement:.6f} (required 1.0)"
        )
    return Parity(rows=len(x), max_abs_diff=max_abs_diff, argmax_agreement=agreement)
