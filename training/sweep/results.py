"""The sweep's report: results.csv (one row per trial), summary.csv and results.md (one row per
configuration: mean, std, min..max and n over its seeds) and PNG plots.

Trials that differ only by `seed` are runs of one configuration; the report compares
configurations by their mean and shows the seed-to-seed spread next to it, so a difference
smaller than the spread reads as noise. Plots answer the study's questions directly, each
comparing like with like: depth per width and per activation (only configurations that change
nothing else), the train/validation gap per regularizer (one family of configurations that
differ only in their regularizers), and which models are worth serving (accuracy against
onnxruntime latency, Pareto front marked).
"""

import csv
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from training.sweep.grid import config_id
from training.sweep.record import TrialRecord

COLUMNS = [
    "trial_id", "config_id", "seed", "status", "overrides", "depth", "width", "parameters",
    "epochs_planned", "epochs_run", "best_epoch", "train_accuracy", "val_accuracy",
    "test_accuracy", "gap", "train_loss", "val_loss", "test_loss", "train_seconds",
    "onnx_bytes", "latency_b1_us", "latency_b256_us", "error",
]
SPREAD_METRICS = ["train_accuracy", "val_accuracy", "test_accuracy", "gap"]
"""Summarized per configuration as mean, std, min and max over its seeds."""
MEAN_METRICS = ["epochs_run", "train_seconds"]
"""Summarized per configuration by their mean only."""
MEDIAN_METRICS = ["latency_b1_us", "latency_b256_us"]
"""Summarized by the median: one trial timed while the machine was busy is an outlier."""
SUMMARY_COLUMNS = [
    "config_id", "configuration", "n", "seeds", "failed", "depth", "width", "parameters",
    "ended_early",
    *[f"{metric}_{stat}" for metric in SPREAD_METRICS for stat in ("mean", "std", "min", "max")],
    *[f"{metric}_mean" for metric in MEAN_METRICS],
    *[f"{metric}_median" for metric in MEDIAN_METRICS],
]
REGULARIZERS = ("l1", "l2", "dropout", "input_dropout", "weight_decay")
"""Fields a regularization comparison varies; every other field must be equal."""
NOT_COMPARED = {"seed", "runs_dir", "repository", "threads", "data_cache"}
"""Fields that do not make configurations different: the seed, and where files go/threads."""


@dataclass(frozen=True)
class Spread:
    """One metric over the seeds of a configuration."""

    n: int
    mean: float
    std: float
    """Sample standard deviation (n - 1 in the denominator); 0 for a single value."""
    low: float
    high: float
    median: float

    @classmethod
    def of(cls, values: Sequence[float | None]) -> "Spread | None":
        present = [v for v in values if v is not None]
        if not present:
            return None
        std = statistics.stdev(present) if len(present) > 1 else 0.0
        return cls(len(present), statistics.fmean(present), std, min(present), max(present),
                   statistics.median(present))

    def text(self, digits: int = 4) -> str:
        """`mean ± std [min..max]`, or the value alone for a single seed."""
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return (f"{self.mean:.{digits}f} ± {self.std:.{digits}f} "
                f"[{self.low:.{digits}f}..{self.high:.{digits}f}]")

    def errors(self) -> tuple[float, float]:
        """Distances from the mean down to min and up to max (matplotlib's yerr)."""
        return self.mean - self.low, self.high - self.mean


@dataclass(frozen=True)
class Configuration:
    """The trials of one configuration: same overrides apart from the seed."""

    config_id: str
    overrides: dict[str, Any]
    trials: tuple[TrialRecord, ...]

    @property
    def ok(self) -> list[TrialRecord]:
        return [r for r in self.trials if r.status == "ok"]

    @property
    def config(self) -> dict[str, Any]:
        """The full config of its first finished trial (seed aside, all trials share it)."""
        return next((r.config for r in self.ok if r.config), {})

    def spread(self, metric: str) -> Spread | None:
        return Spread.of([getattr(r, metric) for r in self.ok])

    def seeds(self) -> list[int]:
        return sorted(s for s in (seed_of(r) for r in self.trials) if s is not None)

    def label(self) -> str:
        """A short name: its overrides without the seed, hidden sizes as 128-128."""
        return short_label(self.overrides)


def seed_of(record: TrialRecord) -> int | None:
    """The seed a trial ran with: its own override, else the base config's."""
    seed = record.overrides.get("seed", (record.config or {}).get("seed"))
    return int(seed) if seed is not None else None


def short_label(overrides: Mapping[str, Any]) -> str:
    parts = []
    for name, value in overrides.items():
        if name == "seed":
            continue
        if name == "hidden_sizes":
            parts.append("-".join(map(str, value)) if value else "no hidden layer")
        else:
            parts.append(f"{name}={json.dumps(value)}")
    return ", ".join(parts) or "base"


def configurations(records: Sequence[TrialRecord]) -> list[Configuration]:
    """Trials grouped by configuration, best mean validation accuracy first (ties: lower mean
    batch-1 latency); configurations without a finished trial last. Trials by seed inside."""
    groups: dict[str, list[TrialRecord]] = defaultdict(list)
    for record in records:
        groups[config_id(record.overrides)].append(record)
    found = [
        Configuration(cid, {k: v for k, v in trials[0].overrides.items() if k != "seed"},
                      tuple(sorted(trials, key=lambda r: (seed_of(r) is None, seed_of(r) or 0))))
        for cid, trials in groups.items()
    ]

    def key(group: Configuration) -> tuple[int, float, float]:
        val, latency = group.spread("val_accuracy"), group.spread("latency_b1_us")
        if val is None:
            return (1, 0.0, 0.0)
        return (0, -val.mean, latency.mean if latency else float("inf"))
    return sorted(found, key=key)


def ranked(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Best first: validation accuracy, ties to lower batch-1 latency; failed trials last."""
    def key(record: TrialRecord) -> tuple[int, float, float]:
        if record.status != "ok" or record.val_accuracy is None:
            return (1, 0.0, 0.0)
        return (0, -record.val_accuracy, record.latency_b1_us or float("inf"))
    return sorted(records, key=key)


def by_configuration(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Every trial, configuration by configuration (best mean first), seeds in order; then the
    failed and pruned trials. Without seeds this is the plain ranking by validation accuracy."""
    groups = configurations(records)
    ordered = [r for group in groups for r in group.ok]
    return ordered + ranked([r for r in records if r.status != "ok"])


def ended_early(record: TrialRecord) -> bool:
    """Fewer epochs run than planned. (Counted from the epochs, not fit's `stopped_early`: until
    2026-12-02 that flag was also set when patience ran out at the last epoch, and results
    recorded before then still carry it; counting it gave the old doc 8 where its table had 6.)"""
    return (record.epochs_run or 0) < int((record.config or {}).get("epochs", 0))


def early_stopping_summary(records: Sequence[TrialRecord]) -> str:
    """How often early stopping ended a trial before its last epoch, counted from the records."""
    watched = [r for r in records if r.status == "ok" and (r.config or {}).get("early_stopping")]
    if not watched:
        return "No finished trial had early stopping on."
    stopped = sum(ended_early(r) for r in watched)
    ran = sum(r.epochs_run or 0 for r in watched)
    planned = sum(int((r.config or {}).get("epochs", 0)) for r in watched)
    return (f"Early stopping: {stopped} of {len(watched)} finished trials with early stopping on "
            f"stopped before their last epoch; they ran {ran} of {planned} planned epochs.")


def best_trial(records: Sequence[TrialRecord]) -> TrialRecord | None:
    """The trial to publish: the configuration with the best mean validation accuracy over its
    seeds (ties: lower latency), and of its seeds the best on validation; None if all failed.

    Ranking single trials would let one lucky seed of a configuration that is worse on average
    win: seed-to-seed spread (~0.5 points on Fashion) is as large as the differences compared.
    Without seeds every configuration is one trial, and this is the plain ranking.
    """
    for group in configurations(records):
        if group.ok:
            return ranked(group.ok)[0]
    return None


def cell(record: TrialRecord, column: str) -> str:
    """One table cell as text: overrides as compact JSON, floats rounded for reading."""
    if column == "config_id":
        return config_id(record.overrides)
    if column == "seed":
        seed = seed_of(record)
        return "" if seed is None else str(seed)
    if column == "epochs_planned":
        return str((record.config or {}).get("epochs", ""))
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
        for record in by_configuration(records):
            writer.writerow([cell(record, column) for column in COLUMNS])


def summary_row(group: Configuration) -> dict[str, str]:
    """One configuration as summary.csv cells: spread metrics as mean/std/min/max."""
    first = group.ok[0] if group.ok else group.trials[0]
    watched = [r for r in group.ok if (r.config or {}).get("early_stopping")]
    row = {
        "config_id": group.config_id, "configuration": group.label(), "n": str(len(group.ok)),
        "seeds": " ".join(map(str, group.seeds())),
        "failed": str(len(group.trials) - len(group.ok)),
        "depth": cell(first, "depth"), "width": cell(first, "width"),
        "parameters": cell(first, "parameters"),
        "ended_early": f"{sum(ended_early(r) for r in watched)}/{len(watched)}"
        if watched else "",
    }
    for metric in SPREAD_METRICS:
        spread = group.spread(metric)
        for stat in ("mean", "std", "low", "high"):
            name = {"low": "min", "high": "max"}.get(stat, stat)
            row[f"{metric}_{name}"] = "" if spread is None else f"{getattr(spread, stat):.4f}"
    for metric in MEAN_METRICS:
        spread = group.spread(metric)
        row[f"{metric}_mean"] = "" if spread is None else f"{spread.mean:.2f}"
    for metric in MEDIAN_METRICS:
        spread = group.spread(metric)
        row[f"{metric}_median"] = "" if spread is None else f"{spread.median:.2f}"
    return row


def write_summary_csv(records: Sequence[TrialRecord], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for group in configurations(records):
            writer.writerow(summary_row(group))


def markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:200]


def write_markdown(records: Sequence[TrialRecord], path: Path, title: str) -> None:
    """Per configuration (mean ± std [min..max] over its seeds), then every trial; errors are
    shortened and pipes escaped so rows stay rows."""
    groups = configurations(records)
    seeds = sorted({s for group in groups for s in group.seeds()})
    lines = [f"# {title}", "",
             f"{len(records)} trials: {len(groups)} configurations x seeds "
             f"{', '.join(map(str, seeds)) or '(none recorded)'}. "
             + early_stopping_summary(records), "",
             "## Per configuration", "",
             "Mean ± sample standard deviation [min..max] over the configuration's finished "
             "trials (n); gap = train - validation accuracy. Best mean validation accuracy first.",
             ""]
    header = ["configuration", "config_id", "n", "parameters", "epochs run", "ended early",
              "train acc",
              "val acc", "test acc", "gap", "batch-1 µs/row (median)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        epochs, latency = group.spread("epochs_run"), group.spread("latency_b1_us")
        cells = [group.label(), group.config_id, str(len(group.ok)),
                 cell(group.ok[0], "parameters") if group.ok else "",
                 f"{epochs.mean:.1f}" if epochs else "", summary_row(group)["ended_early"],
                 *[spread.text() if (spread := group.spread(m)) else ""
                   for m in SPREAD_METRICS],
                 f"{latency.median:.1f}" if latency else ""]
        lines.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
    lines += ["", "## Per trial", "", "| " + " | ".join(COLUMNS) + " |",
              "|" + "---|" * len(COLUMNS)]
    for record in by_configuration(records):
        lines.append("| " + " | ".join(markdown_cell(cell(record, column))
                                       for column in COLUMNS) + " |")
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


def changed_fields(group: Configuration, base: Mapping[str, Any] | None) -> set[str]:
    """The fields a configuration sets to something other than the base config (all its
    overridden fields when the base is unknown); the seed does not count."""
    return {name for name, value in group.overrides.items()
            if name not in NOT_COMPARED and (base is None or base.get(name) != value)}


def seeds_note(groups: Sequence[Configuration]) -> str:
    """`mean of 3 seeds, bars: min..max` (or `2-3 seeds` when configurations differ)."""
    counts = sorted({len(g.ok) for g in groups}) or [0]
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"mean of {n} seed{'s' if n != '1' else ''}, bars: min..max"


def depth_lines(records: Sequence[TrialRecord], group: str,
                base: Mapping[str, Any] | None = None,
                ) -> tuple[dict[Any, dict[int, Configuration]], bool]:
    """The points of a depth plot: {width or activation: {depth: configuration}}, and whether
    each point had to be the best of several configurations.

    Like with like: only configurations that change nothing but the hidden sizes (and, per
    activation, the activation) from the base; if the sweep has none (a grid over more fields),
    each point is the best configuration there (returned True). Depth 0 (softmax regression)
    has no width or hidden activation, so it joins every line; shapes with mixed widths appear
    only in the per-activation plot.
    """
    allowed = {"hidden_sizes"} if group == "width" else {"hidden_sizes", "activation"}
    finished = [g for g in configurations(records)
                if g.ok and g.ok[0].depth is not None and g.spread("test_accuracy")]
    plain = [g for g in finished if changed_fields(g, base) <= allowed]
    chosen = plain or finished
    lines: dict[Any, dict[int, Configuration]] = defaultdict(dict)
    shared: dict[int, Configuration] = {}
    for item in chosen:
        record = item.ok[0]
        key = record.width if group == "width" else item.config.get("activation")
        depth = record.depth or 0
        if depth > 0 and key is None:
            continue  # mixed widths such as [512, 256] belong to no single width line
        target = shared if depth == 0 else lines[key]
        if depth not in target or mean_of(item) > mean_of(target[depth]):
            target[depth] = item
    if not lines and shared:
        return {"depth 0": shared}, not plain
    return {key: {**shared, **line} for key, line in lines.items()}, not plain


def plot_depth(records: Sequence[TrialRecord], path: Path, group: str,
               base: Mapping[str, Any] | None = None) -> None:
    """Mean test accuracy against depth, one line per width or per activation (depth_lines),
    with min..max bars over the seeds."""
    lines, best_of = depth_lines(records, group, base)
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    keys = sorted(lines, key=lambda k: (isinstance(k, str), k))
    for number, key in enumerate(keys):
        line = lines[key]
        depths = sorted(line)
        spreads = [line[d].spread("test_accuracy") for d in depths]
        errors = [s.errors() if s else (0.0, 0.0) for s in spreads]
        offset = (number - (len(keys) - 1) / 2) * 0.04  # keep bars of equal depths apart
        ax.errorbar([d + offset for d in depths], [s.mean if s else 0.0 for s in spreads],
                    yerr=[[e[0] for e in errors], [e[1] for e in errors]], marker="o",
                    capsize=3, label=key if key == "depth 0" else f"{group} {key}")
    used = [item for line in lines.values() for item in line.values()]
    picked = ", best configuration per point" if best_of else ""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="hidden layers (depth)", ylabel="test accuracy",
           title=f"Test accuracy vs depth by {group}\n({seeds_note(used)}{picked})")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save(fig, path)


def mean_of(group: Configuration, metric: str = "test_accuracy") -> float:
    spread = group.spread(metric)
    return spread.mean if spread else float("-inf")


def regularization_family(records: Sequence[TrialRecord]) -> list[Configuration]:
    """The largest set of finished configurations equal in every field but the regularizers
    (and the seed): the comparison in which each regularizer acts alone. Unregularized first."""
    families: dict[str, list[Configuration]] = defaultdict(list)
    for group in configurations(records):
        if not group.ok or not group.config:
            continue
        rest = {k: v for k, v in group.config.items()
                if k not in NOT_COMPARED and k not in REGULARIZERS}
        families[json.dumps(rest, sort_keys=True)].append(group)
    if not families:
        return []
    family = max(families.values(), key=lambda f: (len(f), sum(len(g.ok) for g in f)))
    return sorted(family, key=lambda g: (regularizer_label(g) != "none", regularizer_label(g)))


def regularizer_label(group: Configuration) -> str:
    """`none`, or the regularizers it turns on, as `l2=0.001, dropout=0.2`."""
    config = group.config
    on = [f"{name}={config[name]:g}" for name in REGULARIZERS if config.get(name)]
    return ", ".join(on) or "none"


def plot_regularization(records: Sequence[TrialRecord], path: Path) -> None:
    """Train, validation and test accuracy per regularizer, within one family of otherwise
    equal configurations (regularization_family), with error bars and the gap labelled."""
    family = regularization_family(records)
    fig = Figure(figsize=(max(6.0, 1.5 * len(family) + 2), 4.6))
    ax = fig.subplots()
    splits = [("train_accuracy", "train"), ("val_accuracy", "validation"),
              ("test_accuracy", "test")]
    width = 0.26
    for index, (metric, name) in enumerate(splits):
        spreads = [g.spread(metric) for g in family]
        means = [s.mean if s else 0.0 for s in spreads]
        errors = [s.errors() if s else (0.0, 0.0) for s in spreads]
        ax.bar([p + (index - 1) * width for p in range(len(family))], means, width=width,
               yerr=[[e[0] for e in errors], [e[1] for e in errors]], capsize=2, label=name)
    tops = []
    for position, group in enumerate(family):
        gap, train = group.spread("gap"), group.spread("train_accuracy")
        top = train.high if train else 0.0
        tops.append(top)
        if gap is not None:
            ax.annotate(f"gap {gap.mean:.3f}\n[{gap.low:.3f}..{gap.high:.3f}]\nn={gap.n}",
                        (position, top + 0.003), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(range(len(family))), [regularizer_label(g) for g in family], fontsize=8)
    lows = [s.low for g in family for m, _ in splits if (s := g.spread(m))]
    ax.set_ylim(max(0.0, min(lows, default=0.0) - 0.03), min(1.0, max(tops, default=1.0) + 0.03))
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # clear of the bars
    config = family[0].config if family else {}
    shape = "-".join(map(str, config.get("hidden_sizes", []))) or "none"
    stopping = "on" if config.get("early_stopping") else "off"
    ax.set_title(f"Regularizers alone: hidden {shape}, {config.get('epochs', '?')} epochs, "
                 f"early stopping {stopping}\n({seeds_note(family)}; gap = train - validation)",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    save(fig, path)


def plot_latency(records: Sequence[TrialRecord], path: Path) -> None:
    """Mean test accuracy against median batch-1 latency per row (log scale; the median, as one
    trial timed while the machine was busy should not move its configuration), per
    configuration, with min..max bars on both; the Pareto front is joined and numbered, its
    configurations listed in a key beside the axes (labels on the points overlapped)."""
    groups = [g for g in configurations(records)
              if g.spread("latency_b1_us") and g.spread("test_accuracy")]
    latency = [g.spread("latency_b1_us") for g in groups]
    accuracy = [g.spread("test_accuracy") for g in groups]
    points = [(x.median, y.mean) for x, y in zip(latency, accuracy, strict=True)
              if x and y]
    fig = Figure(figsize=(8.6, 4.6))
    ax = fig.subplots()
    if points:
        ax.errorbar([p[0] for p in points], [p[1] for p in points],
                    xerr=list(zip(*[(x.median - x.low, x.high - x.median)
                                    for x in latency if x], strict=True)),
                    yerr=list(zip(*[y.errors() for y in accuracy if y], strict=True)),
                    fmt="o", ms=4, alpha=0.6, capsize=2, label="configuration")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=6)
    front = pareto_front(points)
    key = []
    if front:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "r-", lw=1,
                drawstyle="steps-post", label="Pareto front")
        for number, i in enumerate(front, start=1):
            ax.annotate(str(number), points[i], xytext=(-10, 4), textcoords="offset points",
                        fontsize=8, color="darkred", fontweight="bold")
            key.append(f"{number}: {groups[i].label()}")
        fig.text(0.70, 0.85, "Pareto front\n" + "\n".join(key), fontsize=7, va="top",
                 family="monospace", wrap=True)
    ax.set(xlabel="onnxruntime latency per row, batch 1 (µs, 1 thread)",
           ylabel="test accuracy")
    ax.set_title("Accuracy vs serving latency per configuration\n(test accuracy: "
                 f"{seeds_note(groups)}; latency: median)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout(rect=(0.0, 0.0, 0.68, 1.0))
    fig.savefig(path, dpi=80)


def save(fig: Figure, path: Path) -> None:
    """Small PNGs (they are committed with the docs). A bare Figure renders with Agg and needs
    no pyplot: no global backend switch, no window, nothing to close."""
    fig.tight_layout()
    fig.savefig(path, dpi=80)


Plot = Callable[[Sequence[TrialRecord], Path, Mapping[str, Any] | None], None]
PLOTS: dict[str, Plot] = {
    "accuracy_vs_depth_by_width.png":
        lambda records, path, base: plot_depth(records, path, "width", base),
    "accuracy_vs_depth_by_activation.png":
        lambda records, path, base: plot_depth(records, path, "activation", base),
    "regularization_gap.png": lambda records, path, base: plot_regularization(records, path),
    "accuracy_vs_latency.png": lambda records, path, base: plot_latency(records, path),
}


def write_report(records: Sequence[TrialRecord], out_dir: Path, title: str,
                 base: dict[str, Any] | None = None) -> list[Path]:
    """Write the table files, the whole base config every trial started from (base.json) and
    every plot into `out_dir`; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(records, out_dir / "results.csv")
    write_summary_csv(records, out_dir / "summary.csv")
    write_markdown(records, out_dir / "results.md", title)
    written = [out_dir / "results.csv", out_dir / "summary.csv", out_dir / "results.md"]
    if base is not None:
        (out_dir / "base.json").write_text(json.dumps(base, indent=2, sort_keys=True) + "\n")
        written.append(out_dir / "base.json")
    for name, plot in PLOTS.items():
        plot(records, out_dir / name, base)
        written.append(out_dir / name)
    return written
