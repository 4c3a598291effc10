"""model.json, the model card: every field docs/artifact.md lists, built from one run's results."""

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime

from artifact.card import SCHEMA_VERSION, image_normalization
from artifact.layout import INPUT_NAME, ONNX_FILE
from training.config import TrainConfig
from training.data import Dataset
from training.export import OPSET, Parity
from training.fit import FitResult
from training.model import MLP


def build_card(
    *,
    config: TrainConfig,
    version: int,
    onnx_bytes: bytes,
    model: MLP,
    dataset: Dataset,
    splits: dict[str, int],
    fit_result: FitResult,
    metrics: dict[str, object],
    parity: Parity,
    provenance: dict[str, object],
) -> dict[str, object]:
    """The card as a JSON-ready dict (schema_version 1)."""
    classes = len(dataset.class_names)
    return {
        "schema_version": SCHEMA_VERSION,
        "name": config.name,
        "version": version,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "onnx": {
            "file": ONNX_FILE,
            "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "opset": OPSET,
            "size_bytes": len(onnx_bytes),
        },
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, model.config.inputs],
                    "range": [0, 255]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
        "labels": list(dataset.class_names),
        "image_normalization": image_normalization(dataset.name),
        "config": config.model_dump(mode="json"),
        "model": asdict(model.config),
        "data": {"name": dataset.name, "fingerprint": dataset.fingerprint(), "splits": splits},
        "training": {
            "epochs_run": fit_result.epochs_run,
            "best_epoch": fit_result.best_epoch,
            "stopped_early": fit_result.stopped_early,
            "seconds": round(fit_result.seconds, 3),
            "parameters": model.parameter_count(),
        },
        "metrics": metrics,
        "parity": asdict(parity),
        "provenance": provenance,
    }


def card_bytes(card: dict[str, object]) -> bytes:
    return (json.dumps(card, indent=2) + "\n").encode()
