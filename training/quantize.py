"""INT8 variant of an exported model: onnxruntime static quantization, checked against float.

Why INT8: the MLP's cost is its Gemms, and int8 Gemms run 3-4x the float32 rows/s here (AVX-512
VNNI; `bench/serve_load.py` measures both). What is quantized: the hidden layers' Gemm weights
per output channel (int8) and the activations feeding them (uint8, ranges calibrated on training
images); preprocessing (scale, standardize), the output layer, softmax and argmax stay float32
in the same graph, so the variant takes raw 0..255 pixels and returns full-precision
probabilities like the float model.

Format: QDQ (QuantizeLinear/DequantizeLinear pairs around float ops, fused by onnxruntime into
QGemm at load) by default; QOperator (QGemm written into the file) measured the same speed here
(`mlp-train` config key `int8_format`). The variant is published only if its test accuracy is
at most `int8_max_accuracy_drop` below the float model's; its card records both accuracies, the
argmax agreement and batch-1 / batch-256 latency of both.
"""

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from artifact.layout import CARD_FILE, ONNX_FILE
from training.card import card_bytes
from training.config import TrainConfig
from training.data import Dataset
from training.evaluate import classification_metrics
from training.export import Parity, stamp_version
from training.publish import publish

FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
QUANTIZED_OPS = ["Gemm", "Relu"]  # Relu folds into the Gemm's output range
CALIBRATION_BATCH = 256
LATENCY_BATCHES = (1, 256)
SUFFIX = "-int8"


@dataclass(frozen=True)
class Comparison:
    """INT8 against float on the same test split, as the variant's card records it."""

    float_accuracy: float
    int8_accuracy: float
    argmax_agreement: float
    max_accuracy_drop: float
    float_latency_ms: dict[str, float]
    int8_latency_ms: dict[str, float]

    @property
    def accuracy_drop(self) -> float:
        return self.float_accuracy - self.int8_accuracy

    @property
    def acceptable(self) -> bool:
        """Within the configured margin (a tiny epsilon absorbs float rounding of the drop)."""
        return self.accuracy_drop <= self.max_accuracy_drop + 1e-9

    def verdict(self) -> str:
        """One line for the training log."""
        return (f"INT8 accuracy {self.int8_accuracy:.4f} vs float {self.float_accuracy:.4f} "
                f"(drop {100 * self.accuracy_drop:.2f} points, limit "
                f"{100 * self.max_accuracy_drop:.2f}), argmax agreement "
                f"{self.argmax_agreement:.4f}, batch 256 "
                f"{self.float_latency_ms['batch_256'] / self.int8_latency_ms['batch_256']:.1f}x "
                "faster")


class _Reader(CalibrationDataReader):
    """Feeds calibration images to onnxruntime's calibrator in batches."""

    def __init__(self, x: np.ndarray) -> None:
        self._batches = iter([{"input": x[i:i + CALIBRATION_BATCH].astype(np.float32)}
                              for i in range(0, len(x), CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def calibration_rows(x_train: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """A fixed random sample of training images (same seed, same sample)."""
    if rows >= len(x_train):
        return x_train
    picked = np.random.default_rng(seed).choice(len(x_train), rows, replace=False)
    return x_train[np.sort(picked)]


def quantize(float_proto: onnx.ModelProto, calibration: np.ndarray, fmt: str,
             name: str) -> onnx.ModelProto:
    """Static INT8 quantization of `float_proto` calibrated on `calibration` (raw pixels), its
    metadata renamed to model `name`."""
    float_proto = _named(float_proto)
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(float_proto, source)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to run shape pre-processing: not needed here
        try:
            quantize_static(
                source, target, _Reader(calibration), quant_format=FORMATS[fmt],
                op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=_output_layer(float_proto),
            )
        finally:
            root.setLevel(level)
        proto = onnx.load(target)
    props = {p.key: p.value for p in float_proto.metadata_props}
    props["name"] = name
    props["quantization"] = f"int8 static {fmt}, per-channel weights"
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _named(proto: onnx.ModelProto) -> onnx.ModelProto:
    """`proto` with every node named: the output layer is excluded by name, and a graph whose
    nodes have none (torch names them; hand-built graphs often do not) excluded every Gemm, so
    nothing was quantized and the "INT8" variant ran at float speed."""
    if all(node.name for node in proto.graph.node):
        return proto
    named = onnx.ModelProto()
    named.CopyFrom(proto)
    taken = {node.name for node in named.graph.node}
    for index, node in enumerate(named.graph.node):
        if not node.name:
            node.name = next(candidate for n in range(index, index + len(taken) + 1)
                             if (candidate := f"{node.op_type}_{n}") not in taken)
            taken.add(node.name)
    return named


def _output_layer(proto: onnx.ModelProto) -> list[str]:
    """The last Gemm (hidden -> logits) stays float32: it is a small share of the work, and
    quantizing the logits is what moves argmax (Fashion-MNIST: 98.6% -> 99.9% agreement)."""
    gemms = [node.name for node in proto.graph.node if node.op_type == "Gemm"]
    return gemms[-1:] if len(gemms) > 1 else []


def _session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # what the service runs by default
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def latencies_ms(sessions: list[ort.InferenceSession], x: np.ndarray, runs: int = 40
                 ) -> list[dict[str, float]]:
    """Median ms of one call at batch 1 and 256 (one onnxruntime thread) for each session,
    measured interleaved call by call, so load from other work hits them alike."""
    results: list[dict[str, float]] = [{} for _ in sessions]
    for batch in LATENCY_BATCHES:
        rows = np.resize(x, (batch, x.shape[1])).astype(np.float32)
        times: list[list[float]] = [[] for _ in sessions]
        for run in range(runs + 5):
            for session, spent in zip(sessions, times, strict=True):
                t0 = time.perf_counter()
                session.run(None, {"input": rows})
                if run >= 5:  # the first calls warm up
                    spent.append(time.perf_counter() - t0)
        for result, spent in zip(results, times, strict=True):
            result[f"batch_{batch}"] = round(1e3 * float(np.median(spent)), 4)
    return results


def compare(float_bytes: bytes, int8_bytes: bytes, x_test: np.ndarray, y_test: np.ndarray,
            max_accuracy_drop: float) -> Comparison:
    """Accuracy of both on the test split, argmax agreement, latency of both."""
    x = x_test.astype(np.float32)
    float_session, int8_session = _session(float_bytes), _session(int8_bytes)
    float_labels = float_session.run(["label"], {"input": x})[0]
    int8_labels = int8_session.run(["label"], {"input": x})[0]
    float_latency, int8_latency = latencies_ms([float_session, int8_session], x)
    return Comparison(
        float_accuracy=float((float_labels == y_test).mean()),
        int8_accuracy=float((int8_labels == y_test).mean()),
        argmax_agreement=float((int8_labels == float_labels).mean()),
        max_accuracy_drop=max_accuracy_drop,
        float_latency_ms=float_latency,
        int8_latency_ms=int8_latency,
    )


def card_section(comparison: Comparison, fmt: str, calibration: int, source: str,
                 source_version: int) -> dict[str, object]:
    """The `quantization` section of the variant's model card."""
    return {
        "source": {"name": source, "version": source_version},
        "format": fmt,
        "weights": "int8, per output channel",
        "activations": "uint8, MinMax ranges calibrated on training images",
        "calibration_rows": calibration,
        "quantized_ops": QUANTIZED_OPS,
        "accuracy_drop": round(comparison.accuracy_drop, 6),
        **asdict(comparison),
    }


@dataclass(frozen=True)
class Int8Result:
    """What became of the INT8 variant: published (its folder) or refused (None)."""

    name: str
    comparison: Comparison
    published_dir: Path | None


CardBuilder = Callable[..., dict[str, object]]  # build_card with the run's fixed parts bound


def publish_int8(config: TrainConfig, float_proto: onnx.ModelProto, float_version: int,
                 x_train: np.ndarray, dataset: Dataset, build_card: CardBuilder) -> Int8Result:
    """Quantize, compare with the float model on the test split, publish `<name>-int8` as its
    next version if the accuracy loss is within the margin; its card says how it compares."""
    name = config.name + SUFFIX
    calibration = calibration_rows(x_train, config.int8_calibration_rows, config.seed)
    proto = quantize(float_proto, calibration, config.int8_format, name)
    float_bytes = stamp_version(float_proto, float_version)
    comparison = compare(float_bytes, proto.SerializeToString(), dataset.x_test, dataset.y_test,
                         config.int8_max_accuracy_drop)
    if not comparison.acceptable:
        return Int8Result(name, comparison, None)
    x = dataset.x_test.astype(np.float32)
    probabilities = _session(proto.SerializeToString()).run(["probabilities"], {"input": x})[0]
    reference = _session(float_bytes).run(["probabilities"], {"input": x})[0]
    metrics = classification_metrics(dataset.y_test, probabilities, list(dataset.class_names))
    # For the variant, parity is measured against the float model it was made from.
    parity = Parity(rows=len(x), max_abs_diff=float(np.abs(probabilities - reference).max()),
                    argmax_agreement=comparison.argmax_agreement)
    variant_config = config.model_copy(update={"name": name})
    section = card_section(comparison, config.int8_format, len(calibration), config.name,
                           float_version)

    def build_files(version: int) -> dict[str, bytes]:
        onnx_bytes = stamp_version(proto, version)
        card = build_card(config=variant_config, version=version, onnx_bytes=onnx_bytes,
                          metrics=metrics, parity=parity)
        card["quantization"] = section
        return {ONNX_FILE: onnx_bytes, CARD_FILE: card_bytes(card)}

    return Int8Result(name, comparison, publish(config.repository, name, build_files))
