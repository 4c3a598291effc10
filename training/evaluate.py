"""Test metrics from predicted probabilities: works the same for torch and onnxruntime output."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from artifact.card import card_labels, read_card, read_verified_onnx
from artifact.layout import INPUT_NAME
from artifact.names import ArtifactError
from training.data import Dataset
from training.model import MLP

PREDICT_BATCH = 4096


@torch.no_grad()
def predict_probabilities(model: MLP, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities float32 [N, C] for raw pixels [N, 784], in eval mode."""
    model.eval()
    rows = [
        torch.softmax(model(torch.from_numpy(x[start : start + PREDICT_BATCH]).float()), dim=1)
        for start in range(0, len(x), PREDICT_BATCH)
    ]
    return torch.cat(rows).numpy()


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted], int64 [C, C]."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, labels: list[str]
) -> dict[str, object]:
    """Accuracy, mean cross-entropy, per-class precision/recall/F1/support, confusion matrix.

    Shaped exactly as the `metrics` section of model.json (docs/artifact.md). A class that is
    never predicted (or never present) gets precision (or recall) 0 rather than NaN.
    """
    if probabilities.shape != (len(y_true), len(labels)):
        raise ValueError(
            f"probabilities have shape {probabilities.shape}, expected "
            f"({len(y_true)}, {len(labels)}) for {len(y_true)} rows and {len(labels)} labels"
        )
    y_pred = probabilities.argmax(axis=1)
    counts = confusion_matrix(y_true, y_pred, len(labels))
    true_positive = np.diag(counts).astype(np.float64)
    predicted = counts.sum(axis=0)
    support = counts.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive),
                          where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive),
                   where=denominator > 0)
    picked = probabilities[np.arange(len(y_true)), y_true].astype(np.float64)
    loss = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())
    per_class = [
        {"label": label, "precision": float(precision[i]), "recall": float(recall[i]),
         "f1": float(f1[i]), "support": int(support[i])}
        for i, label in enumerate(labels)
    ]
    return {
        "test_accuracy": float((y_pred == y_true).mean()),
        "test_loss": loss,
        "per_class": per_class,
        "confusion_matrix": counts.tolist(),
    }


class ModelFileError(Exception):
    """A published version folder that cannot be evaluated; the message names the file."""


def evaluate_published(model_dir: Path, dataset: Dataset) -> dict[str, object]:
    """Metrics of MODEL_DIR/model.onnx (run by onnxruntime) on `dataset`'s test split.

    Checks what the service checks first, with the same code (artifact/): the card, the file's
    sha256 against it and the labels; then that the labels match the data set's classes.
    """
    try:
        card = read_card(model_dir)
        onnx_bytes = read_verified_onnx(model_dir, card)
        labels = card_labels(card)
    except ArtifactError as error:
        hint = ("; is it a published version folder like models/mnist-mlp/1?"
                if str(error).endswith(" is missing") else "")
        raise ModelFileError(f"{model_dir}: {error}{hint}") from None
    if len(labels) != len(dataset.class_names):
        raise ModelFileError(
            f"{model_dir} predicts {len(labels)} classes but {dataset.name} has "
            f"{len(dataset.class_names)}"
        )
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    probabilities = np.concatenate([
        session.run(["probabilities"], {INPUT_NAME: dataset.x_test[start:start + PREDICT_BATCH]
                                        .astype(np.float32)})[0]
        for start in range(0, len(dataset.x_test), PREDICT_BATCH)
    ])
    return classification_metrics(dataset.y_test, probabilities, labels)
