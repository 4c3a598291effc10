"""Run artefacts for people: history JSON, learning curves and confusion matrix as PNG.

Uses matplotlib's object API (Figure renders through Agg) so no global backend or pyplot
state is touched: safe in tests, sweeps and headless containers.
"""

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

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


def plot_learning_curves(fit_result: FitResult, path: Path) -> None:
    """Loss and accuracy, train vs validation, with the epoch whose weights were kept marked."""
    epochs = [row["epoch"] for row in fit_result.history]
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        axes.plot(epochs, [r[f"train_{metric}"] for r in fit_result.history], label="train")
        axes.plot(epochs, [r[f"val_{metric}"] for r in fit_result.history], label="validation")
        chosen = "early stopping chose" if fit_result.stopped_early else "kept"
        axes.axvline(fit_result.best_epoch, color="grey", linestyle="--",
                     label=f"{chosen}: epoch {fit_result.best_epoch}")
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.savefig(path, dpi=100)


def plot_confusion_matrix(counts: np.ndarray, labels: list[str], path: Path) -> None:
    """Counts with true class on rows, predicted on columns, each cell annotated."""
    size = max(5.0, 0.6 * len(labels) + 2)
    figure = Figure(figsize=(size, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels, rotation=45, ha="right")
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = counts.max() / 2 if counts.size else 0
    for (row, col), value in np.ndenumerate(counts):
        axes.text(col, row, str(value), ha="center", va="center", fontsize=8,
                  color="white" if value > threshold else "black")
    figure.savefig(path, dpi=100)
