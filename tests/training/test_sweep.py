"""`mlp-train sweep` end to end on the real mnist-5k: 8 small trials, 2 worker processes
(--workers 2: this one and one it starts) on one SQLite study.

One sweep is run for the module (it is the slow part, ~40 s on 2 cores); the tests then check
its table, plots, the failed trial's record, resuming, and publishing the best trial.
"""

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from training.cli import main
from training.config import TrainConfig
from training.data import load_dataset
from training.sweep.results import COLUMNS, PLOTS

pytestmark = pytest.mark.slow

SWEEP = """
mode = "grid"
[base]
name = "sweep-test"
repository = "{repository}"
epochs = 2
patience = 1
hidden_sizes = [16]
[axes]
hidden_sizes = [[], [16], [16, 16]]
activation = ["relu", "sigmoid"]
[[trials]]
hidden_sizes = [32]
dropout = 0.2
[[trials]]
dropout = 1.5   # invalid on purpose: this trial must fail and be recorded, not stop the sweep
"""


@dataclass
class Sweep:
    grid: Path
    out: Path
    repository: Path


def run(*argv: str) -> int:
    """`mlp-train ...` in this process (with --workers 2 a second worker process joins)."""
    return main(list(argv))


def trainings(out: Path) -> list[Path]:
    """Run folders the core pipeline made: one per trial actually trained."""
    return sorted((out / "runs" / "sweep-test").iterdir())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    root = tmp_path_factory.mktemp("sweep")
    grid = root / "mnist-small.toml"
    grid.write_text(SWEEP.format(repository=root / "models"))
    out = root / "out"
    assert run("sweep", "--grid", str(grid), "--out", str(out), "--workers", "2",
               "--quiet") == 0
    return Sweep(grid, out, root / "models")


def rows(sweep: Sweep) -> list[dict[str, str]]:
    with (sweep.out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_table_has_every_trial_sorted_by_validation_accuracy(sweep: Sweep) -> None:
    table = rows(sweep)
    assert len(table) == 8
    assert list(table[0]) == COLUMNS
    ok = [r for r in table if r["status"] == "ok"]
    assert len(ok) == 7
    accuracies = [float(r["val_accuracy"]) for r in ok]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[0] > 0.5  # 2 epochs on 3,600 digits beat chance (0.1) by far
    for row in ok:
        assert int(row["onnx_bytes"]) > 7850 * 4  # at least the float32 weights
        assert float(row["latency_b1_us"]) > 0
        assert float(row["latency_b256_us"]) > 0
        assert float(row["gap"]) == pytest.approx(
            float(row["train_accuracy"]) - float(row["val_accuracy"]), abs=2e-4)
    per_trial = (sweep.out / "results.md").read_text().split("## Per trial")[1]
    assert per_trial.count(f"| {table[0]['trial_id']} |") == 1


def test_failed_trial_is_recorded_with_its_error(sweep: Sweep) -> None:
    failed = [r for r in rows(sweep) if r["status"] == "failed"]
    assert len(failed) == 1
    assert rows(sweep)[-1] == failed[0]
    assert "dropout" in failed[0]["error"] and "1.5" in failed[0]["error"]
    record = json.loads((sweep.out / "trials" / f"{failed[0]['trial_id']}.json").read_text())
    assert record["status"] == "failed" and record["overrides"] == {"dropout": 1.5}


def test_each_trial_was_trained_exactly_once(sweep: Sweep) -> None:
    assert len(trainings(sweep.out)) == 7
    assert len(list((sweep.out / "trials").glob("*.json"))) == 8


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plots_are_valid_pngs(sweep: Sweep, name: str) -> None:
    path = sweep.out / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()


def test_rerun_trains_nothing(sweep: Sweep) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in (sweep.out / "trials").glob("*.json")}
    assert run("sweep", "--grid", str(sweep.grid), "--out", str(sweep.out), "--quiet") == 0
    assert len(trainings(sweep.out)) == 7  # no new training run
    after = {p.name: p.stat().st_mtime_ns for p in (sweep.out / "trials").glob("*.json")}
    assert after == before
    assert len(rows(sweep)) == 8
    assert (sweep.out / "study.db").is_file()


def test_report_only_remakes_the_report_and_trains_nothing(sweep: Sweep) -> None:
    before = rows(sweep)
    (sweep.out / "results.csv").unlink()
    (sweep.out / "summary.csv").unlink()
    assert run("sweep", "--grid", str(sweep.grid), "--out", str(sweep.out), "--report-only",
               "--quiet") == 0
    assert len(trainings(sweep.out)) == 7
    assert rows(sweep) == before
    with (sweep.out / "summary.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 8  # one configuration per (unseeded) trial


def test_results_record_the_whole_base_config(sweep: Sweep) -> None:
    base = json.loads((sweep.out / "base.json").read_text())
    assert set(base) == set(TrainConfig.model_fields)
    assert base["epochs"] == 2 and base["name"] == "sweep-test" and base["augment_shift"] == 2


def test_folder_of_another_sweep_is_refused(sweep: Sweep, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.toml"
    other.write_text(sweep.grid.read_text().replace("epochs = 2", "epochs = 3"))
    assert run("sweep", "--grid", str(other), "--out", str(sweep.out), "--quiet") == 1
    assert f"{sweep.out} holds sweep" in capsys.readouterr().err


def test_unknown_field_is_refused_before_any_training(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "bad.toml"
    grid.write_text("[axes]\nhidden_layers = [[16]]\n")
    assert run("sweep", "--grid", str(grid), "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "unknown TrainConfig field 'hidden_layers'" in err
    assert not (tmp_path / "out" / "trials").exists()


def test_publish_best_publishes_a_servable_model_with_the_sweep_id(sweep: Sweep) -> None:
    assert run("sweep", "--grid", str(sweep.grid), "--out", str(sweep.out), "--publish-best",
               "--quiet") == 0
    version = sweep.repository / "sweep-test" / "1"
    card = json.loads((version / "model.json").read_text())
    expected_id = json.loads((sweep.out / "sweep.json").read_text())["sweep_id"]
    best = rows(sweep)[0]
    assert card["sweep_id"] == expected_id and card["trial_id"] == best["trial_id"]
    assert card["config"]["hidden_sizes"] == json.loads(best["overrides"]).get(
        "hidden_sizes", [16])
    onnx_bytes = (version / "model.onnx").read_bytes()
    assert card["onnx"]["sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    digits = load_dataset("mnist-5k")
    probabilities, labels = session.run(None, {"input": digits.x_test[:200].astype(np.float32)})
    assert probabilities.shape == (200, 10)
    assert (labels == digits.y_test[:200]).mean() > 0.5
