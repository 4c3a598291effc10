"""The sweep report: ranking, Pareto front, per-configuration spread over seeds, CSV/Markdown
tables and PNG plots, from generated records (nothing is trained)."""

import csv
from pathlib import Path

import matplotlib.image
import pytest
from PIL import Image

from training.sweep.record import TrialRecord, read_record, write_record
from training.sweep.results import (
    COLUMNS,
    SUMMARY_COLUMNS,
    Spread,
    best_trial,
    configurations,
    depth_lines,
    early_stopping_summary,
    pareto_front,
    ranked,
    regularization_family,
    regularizer_label,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


BASE = {"activation": "relu", "dropout": 0.0, "l1": 0.0, "l2": 0.0, "input_dropout": 0.0,
        "weight_decay": 0.0, "early_stopping": True, "hidden_sizes": [64], "epochs": 3,
        "seed": 0, "threads": 1}


def record(tid: str, val: float | None, latency: float | None = 10.0, *, depth: int = 1,
           width: int | None = 64, seed: int | None = None, epochs_run: int = 3,
           stopped_early: bool = False, test: float | None = None,
           **changes: object) -> TrialRecord:
    """A finished trial with made-up but consistent numbers; val None means a failed trial.
    Its overrides are its shape, `changes` (other config fields) and the seed if given."""
    if val is None:
        return TrialRecord(trial_id=tid, overrides={"dropout": 1.5}, status="failed",
                           error="ConfigError: dropout: Input should be less than 1")
    overrides: dict[str, object] = {"hidden_sizes": [width or 8] * depth, **changes}
    if seed is not None:
        overrides["seed"] = seed
    config = {**BASE, **overrides}
    return TrialRecord(
        trial_id=tid, overrides=overrides, status="ok", config=config,
        depth=depth, width=width if depth else None, parameters=1000, epochs_run=epochs_run,
        best_epoch=2, stopped_early=stopped_early, train_accuracy=min(1.0, val + 0.05),
        train_loss=0.3, val_accuracy=val, val_loss=0.4,
        test_accuracy=val - 0.01 if test is None else test, test_loss=0.45, gap=0.05,
        train_seconds=1.0, onnx_bytes=4000, latency_b1_us=latency, latency_b256_us=1.0,
    )


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(10.0, 0.80), (20.0, 0.85), (15.0, 0.70), (30.0, 0.85), (40.0, 0.90), (5.0, 0.60)]
    assert pareto_front(points) == [5, 0, 1, 4]


def test_pareto_front_of_nothing_is_empty() -> None:
    assert pareto_front([]) == []


def test_ranking_is_by_validation_accuracy_ties_by_latency_failed_last() -> None:
    records = [record("slow", 0.9, 50.0), record("bad", None), record("fast", 0.9, 5.0),
               record("low", 0.5)]
    assert [r.trial_id for r in ranked(records)] == ["fast", "slow", "low", "bad"]
    best = best_trial(records)
    assert best is not None and best.trial_id == "fast"
    assert best_trial([record("bad", None)]) is None


def test_the_best_trial_comes_from_the_best_configuration_on_average_not_a_lucky_seed() -> None:
    records = [record("lucky-s0", 0.95, seed=0, width=32), record("lucky-s1", 0.80, seed=1,
                                                                  width=32),
               record("steady-s0", 0.90, seed=0, width=64), record("steady-s1", 0.91, seed=1,
                                                                   width=64)]
    assert ranked(records)[0].trial_id == "lucky-s0"  # the best single trial
    best = best_trial(records)
    assert best is not None and best.trial_id == "steady-s1"  # best mean 0.905, its best seed


def test_record_round_trips_through_its_json_file(tmp_path: Path) -> None:
    original = record("abc123", 0.9)
    path = write_record(tmp_path, original)
    assert path == tmp_path / "trials" / "abc123.json"
    assert read_record(tmp_path, "abc123") == original
    assert read_record(tmp_path, "missing") is None
    assert list(path.parent.glob(".tmp-*")) == []


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report for all checks: plotting is the slow part."""
    tmp_path = tmp_path_factory.mktemp("report")
    records = [
        record("d0", 0.80, 3.0, depth=0),
        record("d1", 0.88, 6.0, depth=1, dropout=0.2),
        record("d2", 0.90, 9.0, depth=2, activation="sigmoid", l2=1e-4),
        # one configuration, three seeds: one row each in results.csv, one in summary.csv
        record("d2w", 0.86, 30.0, depth=2, width=256),
        record("failed", None),
        *[record(f"w512-s{s}", v, latency, width=512, seed=s, early_stopping=False)
          for s, (v, latency) in enumerate([(0.84, 40.0), (0.85, 100.0), (0.83, 41.0)])],
    ]
    write_report(records, tmp_path, "Test sweep", base=BASE)
    return tmp_path


def test_csv_has_every_trial_sorted_with_the_columns(report: Path) -> None:
    with (report / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS
    assert [r["trial_id"] for r in rows] == [
        "d2", "d1", "d2w", "w512-s0", "w512-s1", "w512-s2", "d0", "failed"]
    assert [r["seed"] for r in rows[3:6]] == ["0", "1", "2"]
    assert len({r["config_id"] for r in rows[3:6]}) == 1
    assert rows[0]["seed"] == "0"  # no seed override: the base config's
    assert rows[-1]["status"] == "failed" and "dropout" in rows[-1]["error"]


def test_summary_has_one_row_per_configuration_with_the_spread(report: Path) -> None:
    with (report / "summary.csv").open() as handle:
        rows = {r["configuration"]: r for r in csv.DictReader(handle)}
    assert list(next(iter(rows.values()))) == SUMMARY_COLUMNS
    assert len(rows) == 6  # five single trials (one failed) and one with three seeds
    wide = rows["512, early_stopping=false"]
    assert (wide["n"], wide["seeds"], wide["failed"]) == ("3", "0 1 2", "0")
    assert wide["val_accuracy_mean"] == "0.8400"
    assert wide["val_accuracy_std"] == "0.0100"
    assert (wide["val_accuracy_min"], wide["val_accuracy_max"]) == ("0.8300", "0.8500")
    assert wide["test_accuracy_mean"] == "0.8300"
    assert rows["256-256"]["val_accuracy_std"] == "0.0000"
    assert wide["latency_b1_us_median"] == "41.00"  # one slow timing does not move it


def test_markdown_has_a_row_per_configuration_then_one_per_trial(report: Path) -> None:
    text = (report / "results.md").read_text()
    assert "## Per configuration" in text and "## Per trial" in text
    summary, trials = text.split("## Per trial")
    rows = [line for line in summary.splitlines() if line.startswith("|")]
    assert rows[0].startswith("| configuration | config_id | n |")
    assert len(rows) == 2 + 6
    assert "| 0.8400 ± 0.0100 [0.8300..0.8500] |" in summary
    table = [line for line in trials.splitlines() if line.startswith("|")]
    assert table[0].startswith("| trial_id | config_id | seed | status |")
    assert len(table) == 2 + 8
    assert table[2].startswith("| d2 |")


@pytest.mark.parametrize("name", [
    "accuracy_vs_depth_by_width.png", "accuracy_vs_depth_by_activation.png",
    "regularization_gap.png", "accuracy_vs_latency.png",
])
def test_plots_are_readable_pngs(report: Path, name: str) -> None:
    path = report / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert path.stat().st_size < 200_000


def test_spread_is_mean_sample_std_and_range() -> None:
    spread = Spread.of([0.80, None, 0.84, 0.81])
    assert spread is not None
    assert (spread.n, spread.low, spread.high, spread.median) == (3, 0.80, 0.84, 0.81)
    assert spread.mean == pytest.approx(0.8167, abs=1e-4)
    assert spread.std == pytest.approx(0.02082, abs=1e-5)
    assert spread.errors() == pytest.approx((0.0167, 0.0233), abs=1e-4)
    assert spread.text() == "0.8167 ± 0.0208 [0.8000..0.8400]"
    single = Spread.of([0.9])
    assert single is not None and single.std == 0.0 and single.text() == "0.9000"
    assert Spread.of([None]) is None


def test_trials_that_differ_only_by_seed_form_one_configuration() -> None:
    records = [record(f"a{s}", 0.80 + s / 100, seed=s) for s in (2, 0, 1)]
    records += [record(f"b{s}", 0.85, seed=s, depth=2) for s in (0, 1)]
    records += [record("broken", None)]
    groups = configurations(records)
    assert [len(g.trials) for g in groups] == [2, 3, 1]  # best mean validation first
    assert [r.trial_id for r in groups[1].trials] == ["a0", "a1", "a2"]
    assert groups[1].seeds() == [0, 1, 2]
    assert groups[1].overrides == {"hidden_sizes": [64]}
    assert groups[2].ok == [] and groups[2].spread("val_accuracy") is None


def test_early_stopping_counts_epochs_saved_not_the_patience_flag() -> None:
    """Patience running out at the last epoch sets fit's flag but saves nothing."""
    records = [
        record("full", 0.8, epochs_run=3, stopped_early=True, seed=0),
        record("short", 0.8, epochs_run=2, stopped_early=True, seed=1),
        record("off", 0.8, epochs_run=3, seed=2, early_stopping=False),
    ]
    assert early_stopping_summary(records) == (
        "Early stopping: 1 of 2 finished trials with early stopping on stopped before their "
        "last epoch; they ran 5 of 6 planned epochs.")


def test_regularization_compares_one_family_of_otherwise_equal_configurations() -> None:
    """Only the [512] runs without early stopping: a [128] run with dropout or a [512] run with
    early stopping would mix shapes and schedules into the comparison."""
    family = {"width": 512, "early_stopping": False}
    records = [record(f"none{s}", 0.90, seed=s, **family) for s in range(3)]
    records += [record(f"l2-{s}", 0.89, seed=s, l2=1e-3, **family) for s in range(3)]
    records += [record(f"drop{s}", 0.88, seed=s, dropout=0.5, **family) for s in range(3)]
    records += [record(f"stop{s}", 0.91, seed=s, width=512) for s in range(3)]
    records += [record(f"small{s}", 0.80, seed=s, width=128, dropout=0.5) for s in range(3)]
    chosen = regularization_family(records)
    assert [regularizer_label(g) for g in chosen] == ["none", "dropout=0.5", "l2=0.001"]
    assert all(len(g.ok) == 3 for g in chosen)


def test_depth_lines_hold_only_configurations_that_change_the_shape() -> None:
    records = [record(f"d{d}s{s}", 0.80 + d / 100, depth=d, width=128, seed=s)
               for d in range(3) for s in range(2)]
    records += [record(f"tanh{s}", 0.95, depth=1, width=128, seed=s, activation="tanh")
                for s in range(2)]
    records += [record(f"wide{s}", 0.99, depth=1, width=512, seed=s, dropout=0.5)
                for s in range(2)]
    by_width, best_of = depth_lines(records, "width", BASE)
    assert not best_of
    assert sorted(by_width) == [128]  # the 512 run also changes dropout: not a width point
    assert {d: g.ok[0].val_accuracy for d, g in by_width[128].items()} == pytest.approx({
        0: 0.80, 1: 0.81, 2: 0.82})  # the better tanh run is not the ReLU point
    by_activation, _ = depth_lines(records, "activation", BASE)
    assert sorted(by_activation) == ["relu", "tanh"]
    assert sorted(by_activation["tanh"]) == [0, 1]  # depth 0 joins every line
    only_mixed, best_of = depth_lines([records[-1]], "width", BASE)
    assert best_of and sorted(only_mixed) == [512]
