"""The sweep report: ranking, Pareto front, CSV/Markdown tables and PNG plots from records."""

import csv
from pathlib import Path

import matplotlib.image
import pytest
from PIL import Image

from training.sweep.record import TrialRecord, read_record, write_record
from training.sweep.results import COLUMNS, best_trial, pareto_front, ranked, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def record(tid: str, val: float | None, latency: float | None = 10.0, *, depth: int = 1,
           width: int | None = 64, activation: str = "relu", dropout: float = 0.0,
           l2: float = 0.0) -> TrialRecord:
    """A finished trial with made-up but consistent numbers; val None means a failed trial."""
    if val is None:
        return TrialRecord(trial_id=tid, overrides={"dropout": 1.5}, status="failed",
                           error="ConfigError: dropout: Input should be less than 1")
    config = {"activation": activation, "dropout": dropout, "l1": 0.0, "l2": l2,
              "early_stopping": True, "hidden_sizes": [width or 8] * depth}
    return TrialRecord(
        trial_id=tid, overrides={"dropout": dropout, "l2": l2}, status="ok", config=config,
        depth=depth, width=width if depth else None, parameters=1000, epochs_run=3,
        best_epoch=2, stopped_early=False, train_accuracy=min(1.0, val + 0.05), train_loss=0.3,
        val_accuracy=val, val_loss=0.4, test_accuracy=val - 0.01, test_loss=0.45, gap=0.05,
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
        record("d2w", 0.86, 30.0, depth=2, width=256),
        record("failed", None),
    ]
    write_report(records, tmp_path, "Test sweep")
    return tmp_path


def test_csv_has_every_trial_sorted_with_the_columns(report: Path) -> None:
    with (report / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS
    assert [r["trial_id"] for r in rows] == ["d2", "d1", "d2w", "d0", "failed"]
    assert rows[-1]["status"] == "failed" and "dropout" in rows[-1]["error"]


def test_markdown_table_has_a_header_and_one_row_per_trial(report: Path) -> None:
    lines = (report / "results.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| trial_id | status |")
    assert len(table) == 2 + 5
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
