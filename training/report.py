"""Run artefacts for people: history JSON, learning curves and confusion matrix as PNG.

Uses matplotlib's object API (Figure renders through Agg) so no global backend or pyplot
state is touched: safe in tests, sweeps and headless containers.
"""

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from training.config import TrainConfig
from training.fit import FitResult


def save_history(fit_result: FitResult, monitor: str, path: Path) -> None:
    record = {
        "monitor": monitor,
        "best_epoch": fit_result.best_epoch,
        "stopped_early": fit_result.stopped_early,
        "seconds": fit_result.seconds,
        "epochs": fit_result.history,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


TRAIN_CURVE_NOTE = ("train: running mean during the epoch, dropout on;\n"
                    "validation: after the epoch, eval mode (no dropout)")


def run_title(config: TrainConfig, test_accuracy: float, run_dir: Path) -> str:
    """One line naming what a plot shows: model, data, test accuracy, run id."""
    data = Path(config.data).name if "/" in config.data else config.data  # a file: its name
    return f"{config.name} on {data}, test accuracy {test_accuracy:.4f}, run {run_dir.name}"


def plot_learning_curves(fit_result: FitResult, title: str, path: Path) -> None:
    """Loss and accuracy, train vs validation, with the epoch whose weights were kept marked;
    below them the learning rate and the seconds each epoch took."""
    history = fit_result.history
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(11, 7.5), layout="constrained")
    figure.suptitle(title)
    panels = figure.subplots(2, 2)
    for axes, metric in zip(panels[0], ("loss", "accuracy"), strict=True):
        axes.plot(epochs, [r[f"train_{metric}"] for r in history],
                  label="train (running mean, dropout on)")
        axes.plot(epochs, [r[f"val_{metric}"] for r in history], label="validation (eval mode)")
        chosen = "early stopping chose" if fit_result.stopped_early else "kept"
        axes.axvline(fit_result.best_epoch, color="grey", linestyle="--",
                     label=f"{chosen}: epoch {fit_result.best_epoch}")
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(TRAIN_CURVE_NOTE, fontsize=8, color="dimgrey")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    rate, timing = panels[1]
    rate.plot(epochs, [r["learning_rate"] for r in history], marker=".")
    rate.set_xlabel("epoch")
    rate.set_ylabel("learning rate")
    rate.grid(alpha=0.3)
    timing.plot(epochs, [r["seconds"] for r in history], marker=".", label="wall")
    if all("cpu_seconds" in r for r in history):
        timing.plot(epochs, [r["cpu_seconds"] for r in history], marker=".",
                    label="CPU (all threads)")
    timing.set_xlabel("epoch")
    timing.set_ylabel("seconds per epoch")
    timing.set_ylim(bottom=0)
    timing.grid(alpha=0.3)
    timing.legend(fontsize=8)
    figure.savefig(path, dpi=100)


def normalize_rows(counts: np.ndarray) -> np.ndarray:
    """Each true class's row as shares of its support (recall on the diagonal); empty rows 0."""
    support = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)


def plot_confusion_matrix(counts: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    """Counts (left) and row-normalized shares (right): true class on rows, predicted on columns.

    The normalized view makes classes with different support comparable; its diagonal is each
    class's recall.
    """
    size = max(5.0, 0.6 * len(labels) + 2)
    figure = Figure(figsize=(2 * size, size), layout="constrained")
    figure.suptitle(title)
    shares = normalize_rows(counts)
    for axes, values, text, name in zip(
        figure.subplots(1, 2), (counts, shares),
        ([str(v) for v in counts.flat], [f"{v:.2f}" for v in shares.flat]),
        ("counts", "share of the true class (row-normalized)"), strict=True,
    ):
        image = axes.imshow(values, cmap="Blues")
        figure.colorbar(image, ax=axes, shrink=0.8)
        ticks = range(len(labels))
        axes.set_xticks(ticks, labels, rotation=45, ha="right")
        axes.set_yticks(ticks, labels)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(name)
        threshold = values.max() / 2 if values.size else 0
        for (row, col), label in zip(np.ndindex(values.shape), text, strict=True):
            axes.text(col, row, label, ha="center", va="center", fontsize=7,
                      color="white" if values[row, col] > threshold else "black")
    figure.savefig(path, dpi=100)
