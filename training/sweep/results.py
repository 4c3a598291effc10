"""The sweep's report: results.csv, results.md (sorted by validation accuracy) and PNG plots.

Plots answer the study's questions directly: does depth help (per width and per activation),
how wide a gap between train and validation accuracy each regularizer leaves, and which
models are worth serving (accuracy against onnxruntime latency, Pareto front marked).
"""

import csv
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from training.sweep.record import TrialRecord

COLUMNS = [
    "trial_id", "status", "overrides", "depth", "width", "parameters", "epochs_run",
    "best_epoch", "train_accuracy", "val_accuracy", "test_accuracy", "gap", "train_loss",
    "val_loss", "test_loss", "train_seconds", "onnx_bytes", "latency_b1_us", "latency_b256_us",
    "error",
]
REGULARIZERS = ["l1", "l2", "dropout", "early_stopping"]


def ranked(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Best first: validation accuracy, ties to lower batch-1 latency; failed trials last."""
    def key(record: TrialRecord) -> tuple[int, float, float]:
        if record.status != "ok" or record.val_accuracy is None:
            return (1, 0.0, 0.0)
        return (0, -record.val_accuracy, record.latency_b1_us or float("inf"))
    return sorted(records, key=key)


def best_trial(records: Sequence[TrialRecord]) -> TrialRecord | None:
    """The trial to publish: best validation accuracy, then lowest latency; None if all failed."""
    ok = [r for r in ranked(records) if r.status == "ok"]
    return ok[0] if ok else None


def cell(record: TrialRecord, column: str) -> str:
    """One table cell as text: overrides as compact JSON, floats rounded for reading."""
    value: Any = getattr(record, column)
    if column == "overrides":
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def write_csv(records: Sequence[TrialRecord], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for record in ranked(records):
            writer.writerow([cell(record, column) for column in COLUMNS])


def write_markdown(records: Sequence[TrialRecord], path: Path, title: str) -> None:
    """A GitHub-readable table; errors are shortened and pipes escaped so rows stay rows."""
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for record in ranked(records):
        cells = [cell(record, column).replace("|", "\\|").replace("\n", " ")[:200]
                 for column in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points (latency, accuracy) no other point beats: faster-or-equal and
    at-least-as-accurate with one strictly better. Sorted by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_accuracy = float("-inf")
    for index in order:
        if points[index][1] > best_accuracy:
            front.append(index)
            best_accuracy = points[index][1]
    return front


def plot_depth(records: Sequence[TrialRecord], path: Path, group: str) -> None:
    """Best validation accuracy against depth, one line per width or per activation.

    Depth 0 (softmax regression) has no width or hidden activation, so it joins every line;
    shapes with mixed widths appear only in the per-activation plot.
    """
    best: dict[Any, dict[int, float]] = defaultdict(dict)
    shared: dict[int, float] = {}
    for record in records:
        if record.status != "ok" or record.val_accuracy is None or record.depth is None:
            continue
        key = record.width if group == "width" else (record.config or {}).get("activation")
        if record.depth > 0 and key is None:
            continue  # mixed widths such as [512, 256] belong to no single width line
        target = shared if record.depth == 0 else best[key]
        target[record.depth] = max(target.get(record.depth, 0.0), record.val_accuracy)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for key in sorted(best, key=lambda k: (isinstance(k, str), k)):
        line = {**shared, **best[key]}
        depths = sorted(line)
        ax.plot(depths, [line[d] for d in depths], marker="o", label=f"{group} {key}")
    if not best and shared:
        ax.plot(sorted(shared), [shared[d] for d in sorted(shared)], marker="o", label="depth 0")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="hidden layers (depth)", ylabel="best validation accuracy",
           title=f"Accuracy vs depth by {group}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save(fig, path)


def plot_regularization(records: Sequence[TrialRecord], path: Path) -> None:
    """Mean train and validation accuracy per value of each regularizer; the gap is labelled."""
    ok = [r for r in records if r.status == "ok" and r.config]
    fig = Figure(figsize=(4 * len(REGULARIZERS), 3.6))
    axes = fig.subplots(1, len(REGULARIZERS))
    for ax, name in zip(axes, REGULARIZERS, strict=True):
        groups: dict[Any, list[TrialRecord]] = defaultdict(list)
        for record in ok:
            groups[record.config[name]].append(record)  # type: ignore[index]
        values = sorted(groups, key=float)
        train = [mean([r.train_accuracy for r in groups[v]]) for v in values]
        val = [mean([r.val_accuracy for r in groups[v]]) for v in values]
        positions = range(len(values))
        ax.bar([p - 0.2 for p in positions], train, width=0.4, label="train")
        ax.bar([p + 0.2 for p in positions], val, width=0.4, label="validation")
        for p, t, v, value in zip(positions, train, val, values, strict=True):
            ax.annotate(f"gap {t - v:+.3f}\nn={len(groups[value])}", (p, max(t, v)),
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(positions), [str(v) for v in values], fontsize=8)
        low = min(train + val, default=0.0)
        ax.set_ylim(max(0.0, low - 0.05), 1.02)
        ax.set(title=name, xlabel="value")
    axes[0].set_ylabel("mean accuracy over trials")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Train vs validation accuracy (overfitting gap) per regularization setting")
    save(fig, path)


def plot_latency(records: Sequence[TrialRecord], path: Path) -> None:
    """Validation accuracy against batch-1 latency per row (log scale); the Pareto front joined."""
    ok = [r for r in records if r.status == "ok" and r.latency_b1_us and r.val_accuracy]
    points = [(r.latency_b1_us or 0.0, r.val_accuracy or 0.0) for r in ok]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, alpha=0.6, label="trial")
    front = pareto_front(points)
    if front:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "r-o", ms=5,
                drawstyle="steps-post", label="Pareto front")
        for i in front:
            shape = (ok[i].config or {}).get("hidden_sizes")
            ax.annotate(str(shape).replace(" ", ""), points[i], xytext=(3, -9),
                        textcoords="offset points", fontsize=6, color="darkred")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=6)
    ax.set(xlabel="onnxruntime latency per row, batch 1 (µs, 1 thread)",
           ylabel="validation accuracy", title="Accuracy vs serving latency")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save(fig, path)


def mean(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else 0.0


def save(fig: Figure, path: Path) -> None:
    """Small PNGs (they are committed with the docs). A bare Figure renders with Agg and needs
    no pyplot: no global backend switch, no window, nothing to close."""
    fig.tight_layout()
    fig.savefig(path, dpi=80)


PLOTS = {
    "accuracy_vs_depth_by_width.png": lambda records, path: plot_depth(records, path, "width"),
    "accuracy_vs_depth_by_activation.png":
        lambda records, path: plot_depth(records, path, "activation"),
    "regularization_gap.png": plot_regularization,
    "accuracy_vs_latency.png": plot_latency,
}


def write_report(records: Sequence[TrialRecord], out_dir: Path, title: str,
                 base: dict[str, Any] | None = None) -> list[Path]:
    """Write the table files, the whole base config every trial started from (base.json) and
    every plot into `out_dir`; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(records, out_dir / "results.csv")
    write_markdown(records, out_dir / "results.md", title)
    written = [out_dir / "results.csv", out_dir / "results.md"]
    if base is not None:
        (out_dir / "base.json").write_text(json.dumps(base, indent=2, sort_keys=True) + "\n")
        written.append(out_dir / "base.json")
    for name, plot in PLOTS.items():
        plot(records, out_dir / name)
        written.append(out_dir / name)
    return written
