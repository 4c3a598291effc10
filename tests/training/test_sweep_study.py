"""Sweeps on Optuna with tiny generated data: a real PostgreSQL study shared by two worker
processes (each trial runs exactly once), the median pruner, TPE sampling, and a worker whose
queue ran dry waiting for the others' trials (a dead worker's trial is queued again)."""

import collections
import csv
import json
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest

from tests.training.postgres import postgres_url  # noqa: F401
from tests.training.synthetic import make_dataset, single_thread  # noqa: F401
from training.cli import main
from training.config import TrainConfig
from training.sweep import study as sweep_study
from training.sweep.grid import SweepSpec, expand, load_spec, trial_id
from training.sweep.study import (
    Objective,
    choices,
    finished,
    open_study,
    running_elsewhere,
    work,
)

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


def sqlite_study(tmp_path: Path, axes: str) -> tuple[SweepSpec, optuna.Study, str]:
    spec = load_spec(write_sweep(tmp_path, "grid", axes), TrainConfig.model_fields)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    return spec, open_study(spec, "waiting", url), url


def another_worker_takes(study: optuna.Study) -> optuna.Trial:
    """Pop the next queued trial as another worker's Study.optimize would."""
    with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for optimize()
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        return study.ask()


def answer(value: float) -> Objective:
    return lambda overrides, trial: value


def test_a_worker_whose_queue_ran_dry_waits_for_the_trial_another_worker_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its report is written after `work` returns, so it must hold every worker's trials."""
    monkeypatch.setattr(sweep_study, "OTHERS_POLL_S", 0.05)
    spec, study, url = sqlite_study(tmp_path, "seed = [0, 1]")
    other = another_worker_takes(study)  # the first grid point

    def other_worker_finishes() -> None:
        time.sleep(1.0)
        elsewhere = optuna.load_study(study_name="waiting", storage=url)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            elsewhere.tell(other.number, 0.25)

    finisher = threading.Thread(target=other_worker_finishes)
    started = time.monotonic()
    finisher.start()
    ran = work(study, spec, answer(0.5))
    waited = time.monotonic() - started
    finisher.join()
    assert ran == 1 and waited >= 1.0
    assert sorted(t.value for t in finished(study)) == [0.25, 0.5]


def test_a_dead_workers_trial_goes_back_to_the_queue_and_is_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its heartbeat stops; once it is GRACE_S old the waiting worker fails it, the retry
    callback queues it again, and the waiting worker runs it."""
    monkeypatch.setattr(sweep_study, "OTHERS_POLL_S", 0.05)
    monkeypatch.setattr(sweep_study, "HEARTBEAT_S", 1)
    monkeypatch.setattr(sweep_study, "GRACE_S", 1)
    spec, study, _ = sqlite_study(tmp_path, "seed = [0, 1]")
    dead = another_worker_takes(study)
    space = choices(spec)
    for name in dead.user_attrs["fields"]:  # what run_one does first
        dead.suggest_categorical(name, space[name])
    study._storage.record_heartbeat(dead._trial_id)  # then its worker died
    ran = work(study, spec, answer(0.5))
    states = collections.Counter(t.state for t in finished(study))
    assert ran == 2
    assert states == {optuna.trial.TrialState.COMPLETE: 2, optuna.trial.TrialState.FAIL: 1}
    assert running_elsewhere(study) == 0
