"""Client side of the V2 protocol for the suite: build request bodies, read answers, and check
them against in-process onnxruntime on the very same model file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

FEATURES = 784
JSON = {"content-type": "application/json"}
# Batching changes GEMM blocking, so floats may differ in the last bits; labels must agree.
RTOL, ATOL = 1e-5, 1e-6


def v2_body(rows: np.ndarray, request_id: str | None = None) -> bytes:
    """A V2 JSON infer request for `rows` [n, 784] of integer pixels."""
    body: dict[str, Any] = {"inputs": [{"name": "input", "shape": list(rows.shape),
                                        "datatype": "FP32",
                                        "data": rows.astype(np.int64).ravel().tolist()}]}
    if request_id is not None:
        body["id"] = request_id
    return orjson.dumps(body)


@dataclass
class Answer:
    """The parts of a V2 infer response the suite checks."""

    model_name: str
    model_version: str
    probabilities: np.ndarray
    labels: np.ndarray


def read_answer(content: bytes) -> Answer:
    """Parse a 200 V2 response; raise ValueError naming what is missing or malformed."""
    body = orjson.loads(content)
    outputs = {out["name"]: out for out in body["outputs"]}
    if set(outputs) != {"probabilities", "label"}:
        raise ValueError(f"outputs are {sorted(outputs)}, expected probabilities and label")
    prob = outputs["probabilities"]
    probabilities = np.asarray(prob["data"], dtype=np.float32).reshape(prob["shape"])
    labels = np.asarray(outputs["label"]["data"], dtype=np.int64).reshape(outputs["label"]["shape"])
    return Answer(body["model_name"], str(body["model_version"]), probabilities, labels)


class Reference:
    """In-process onnxruntime on a model file: the answers the server must give."""

    def __init__(self, model_path: Path) -> None:
        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    def run(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, labels = self.session.run(
            ["probabilities", "label"], {"input": rows.astype(np.float32)}
        )
        return probabilities, labels

    def mismatch(self, rows: np.ndarray, answer: Answer) -> str:
        """'' when `answer` is onnxruntime's result for `rows`, else what differs."""
        return compare(self.run(rows), answer)


def compare(expected: tuple[np.ndarray, np.ndarray], answer: Answer) -> str:
    """'' when `answer` carries the `expected` (probabilities, labels), else what differs."""
    probabilities, labels = expected
    if answer.probabilities.shape != probabilities.shape:
        return f"probabilities shape {answer.probabilities.shape} != {probabilities.shape}"
    if not np.array_equal(answer.labels, labels):
        return f"labels {answer.labels.tolist()} != {labels.tolist()}"
    if not np.allclose(answer.probabilities, probabilities, rtol=RTOL, atol=ATOL):
        diff = float(np.max(np.abs(answer.probabilities - probabilities)))
        return f"probabilities differ by up to {diff:.3g}"
    return ""


def error_shape_problem(status: int, content: bytes) -> str:
    """'' when a 4xx body is exactly {"error": "<non-empty text>"}, else what is wrong."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return f"{status} body is not JSON: {content[:200]!r}"
    if not isinstance(body, dict) or set(body) != {"error"}:
        return f"{status} body is not {{'error': ...}}: {content[:200]!r}"
    if not isinstance(body["error"], str) or not body["error"].strip():
        return f"{status} error is not a non-empty string: {content[:200]!r}"
    return ""
