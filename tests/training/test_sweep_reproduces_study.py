"""The hidden-layer study reproduces: one documented trial, re-run through the sweep's own trial
code with the study's pinned base config, gives the number docs/hidden-layers/results.csv
records for it.

The cheapest trial (softmax regression, hidden_sizes = [], seed 0: about 10 s) stands for the
rest: it goes through the same base config, data split, training loop, export and metrics. Runs
are bit-reproducible on one CPU in fp32 (the study pins bf16 = false), and a test accuracy on
10,000 rows is a multiple of 1e-4, so the 4 decimals of the CSV compare exactly.
"""

import csv
from pathlib import Path

import pytest

from training.config import TrainConfig
from training.data import sources
from training.sweep.cli import base_values
from training.sweep.grid import expand, load_spec, trial_id
from training.sweep.trial import TrialJob, run_trial

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sources.FASHION_DIR.is_dir(),
        reason="needs the Debian package dataset-fashion-mnist: apt-get install "
        "dataset-fashion-mnist",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "training" / "configs" / "sweeps" / "fashion-hidden-layers.toml"
DOC = ROOT / "docs" / "hidden-layers.md"
TABLE = ROOT / "docs" / "hidden-layers" / "results.csv"
TRIAL = {"hidden_sizes": [], "seed": 0}


def documented_row(tid: str) -> dict[str, str]:
    with TABLE.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["trial_id"] == tid]
    assert len(rows) == 1, f"{TABLE.name} has {len(rows)} rows for trial {tid}"
    return rows[0]


def test_softmax_regression_seed_0_reruns_to_the_documented_accuracy(tmp_path: Path) -> None:
    spec = load_spec(STUDY, TrainConfig.model_fields)
    assert TRIAL in expand(spec), "the study no longer runs the documented trial"
    tid = trial_id(TRIAL)
    row = documented_row(tid)
    assert row["status"] == "ok" and row["seed"] == "0"
    assert row["test_accuracy"] in DOC.read_text(), "the doc does not quote the trial's number"

    job = TrialJob(tid, TRIAL, base_values(None, spec), str(tmp_path), threads=1)
    record = run_trial(job)

    assert record.status == "ok", record.error
    assert record.test_accuracy is not None and record.val_accuracy is not None
    assert f"{record.test_accuracy:.4f}" == row["test_accuracy"]
    assert f"{record.val_accuracy:.4f}" == row["val_accuracy"]
    assert str(record.epochs_run) == row["epochs_run"]
    assert str(record.parameters) == row["parameters"]
