"""Sweeps on Optuna with tiny generated data: a real PostgreSQL study shared by two worker
processes (each trial runs exactly once), the median pruner, and TPE sampling."""

import collections
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from tests.training.postgres import postgres_url  # noqa: F401
from tests.training.synthetic import make_dataset, single_thread  # noqa: F401
from training.cli import main
from training.config import TrainConfig
from training.sweep.grid import expand, load_spec, trial_id

pytestmark = pytest.mark.usefixtures("single_thread")
WORKER_TIMEOUT_S = 900

SWEEP = """
mode = "{mode}"
{extra}
[base]
name = "tiny-sweep"
data = "{data}"
repository = "{root}/models"
hidden_sizes = [8]
epochs = {epochs}
early_stopping = false
standardize = true
threads = 1
min_test_accuracy = 0.0
validation_fraction = 0.25
[axes]
{axes}
"""


def write_sweep(root: Path, mode: str, axes: str, epochs: int = 1, extra: str = "") -> Path:
    data = make_dataset(n_train=160, n_test=60, separation=20.0)
    source = root / "tiny.npz"
    np.savez(source, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
             y_test=data.y_test)
    grid = root / f"{mode}.toml"
    grid.write_text(SWEEP.format(mode=mode, extra=extra, data=source, root=root, epochs=epochs,
                                 axes=axes))
    return grid


def completed_trial_ids(url: str, name: str) -> list[str]:
    storage = optuna.storages.RDBStorage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        return [t.user_attrs["trial_id"] for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    finally:
        storage.engine.dispose()  # close the connection now, not when it is garbage-collected


def study_name(out: Path) -> str:
    return str(json.loads((out / "sweep.json").read_text())["sweep_id"])


def test_two_workers_share_a_postgresql_study_and_run_each_trial_once(
    postgres_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    grid = write_sweep(tmp_path, "grid", 'hidden_sizes = [[4], [8], [12]]\nseed = [0, 1]')
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "training.cli", "sweep", "--grid", str(grid), "--out",
             str(tmp_path / f"machine-{index}"), "--storage", postgres_url, "--threads", "1",
             "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index in range(2)
    ]
    outputs = [worker.communicate(timeout=WORKER_TIMEOUT_S) for worker in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "6 trials in the study" in out
    expected = {trial_id(o) for o in expand(load_spec(grid, TrainConfig.model_fields))}
    done = completed_trial_ids(postgres_url, study_name(tmp_path / "machine-0"))
    assert collections.Counter(done) == collections.Counter(expected)  # each exactly once
    trained = [run for index in range(2)
               for run in (tmp_path / f"machine-{index}" / "runs" / "tiny-sweep").glob("*")
               if (tmp_path / f"machine-{index}" / "runs" / "tiny-sweep").is_dir()]
    assert len(trained) == 6  # no trial trained twice, on either machine
    table = (tmp_path / "machine-1" / "results.csv").read_text().splitlines()
    assert len(table) == 1 + 6  # each worker's table has every worker's trials


def test_the_median_pruner_stops_hopeless_trials_and_says_what_it_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The queue runs in order: two good rates first set the median, then the two hopeless
    rates fall below it after their second epoch and are stopped."""
    grid = write_sweep(tmp_path, "grid", "learning_rate = [0.01, 1e-9]\nseed = [0, 1]",
                       epochs=5, extra='pruner = "median"\nprune_after_trials = 2\n'
                       "prune_after_epochs = 1")
    assert main(["sweep", "--grid", str(grid), "--out", str(tmp_path / "out"), "--workers", "1",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    saved = re.search(r"2 pruned, 0 failed; pruning saved (\d+) of 20 planned epochs", out)
    assert saved is not None, out
    assert 6 <= int(saved.group(1)) <= 8  # stopped after the first or second of 5 epochs
    with (tmp_path / "out" / "results.csv").open() as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    assert sorted(statuses) == ["ok", "ok", "pruned", "pruned"]


def test_tpe_draws_the_requested_number_of_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    grid = write_sweep(tmp_path, "tpe", "hidden_sizes = [[4], [8], [16]]\ndropout = [0.0, 0.2]",
                       extra="samples = 3\nseed = 5")
    command = ["sweep", "--grid", str(grid), "--out", str(tmp_path / "out"), "--workers", "1",
               "--quiet"]
    assert main(command) == 0
    assert "3 trials in the study (3 run by this worker" in capsys.readouterr().out
    assert main(command) == 0
    assert "3 trials in the study (0 run by this worker" in capsys.readouterr().out  # resumed
