"""Crash-safe publishing: SIGKILL `mlp-train train` (and a loop of `training.publish` calls) at
seeded random moments around export and publish.

Proves: no partial version folder is ever visible -- not to a watcher listing the folder every
millisecond during the run, and not to the service's own repository scan and loader afterwards --
and the next run still publishes a correct next version."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.reliability.conftest import MODEL, ReliabilityConfig
from tests.reliability.harness import figures
from tests.reliability.harness.repo_check import Watcher, service_scan_problems, version_problem
from tests.reliability.harness.server import ROOT, clean_env, venv_script

# min_test_accuracy=0: one epoch of 8 units (about 0.6) is about crashes, not quality
TRAIN_OVERRIDES = ["hidden_sizes=[8]", "epochs=1", "threads=1", "early_stopping=false",
                   "min_test_accuracy=0"]


def train_command(tmp_path: Path) -> list[str]:
    return [str(venv_script("mlp-train")), "train", "--quiet", *TRAIN_OVERRIDES,
            f"repository={tmp_path / 'models'}", f"runs_dir={tmp_path / 'runs'}"]


def wait_for(predicate: Callable[[], object], timeout_s: float,
             proc: subprocess.Popen[bytes]) -> bool:
    """Poll `predicate` every millisecond until true, the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.001)
    return False


def temp_folders(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob(".tmp-*")) if model_dir.is_dir() else []


def run_dirs(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "runs" / MODEL
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_sigkilled_training_never_leaves_a_visible_partial_version(
    tmp_path: Path, rel_config: ReliabilityConfig
) -> None:
    rng = random.Random(rel_config.seed)
    model_dir = tmp_path / "models" / MODEL
    env = clean_env({})

    with Watcher(model_dir) as watcher:
        outcomes: list[str] = []
        export_s, tail_s = 0.0, 0.0  # measured by run 0: start -> run folder -> temp folder
        for run in range(rel_config.crash_runs):
            before = run_dirs(tmp_path)
            started = time.monotonic()
            proc = subprocess.Popen(train_command(tmp_path), env=env, cwd=tmp_path,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            mode = ["on-temp-folder", "after-export", "export-window"][run % 3]
            if mode == "on-temp-folder":  # the instant the publish's temp folder exists
                wait_for(lambda b=before: run_dirs(tmp_path) != b, 180, proc)
                export_s = time.monotonic() - started
                wait_for(lambda: temp_folders(model_dir) != [], 60, proc)
                tail_s = time.monotonic() - started - export_s
            elif mode == "after-export":  # a random moment of plotting or publishing
                wait_for(lambda b=before: run_dirs(tmp_path) != b, 180, proc)
                time.sleep(rng.uniform(0, tail_s * 1.2))
            else:  # a random moment around ONNX export and the parity check
                time.sleep(rng.uniform(0.7, 1.0) * export_s)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            outcomes.append(f"{mode}:{'killed' if proc.returncode == -9 else 'finished'}")
            problems = service_scan_problems(tmp_path / "models", MODEL)
            assert problems == [], f"after kill {run} ({mode}): {problems}"

        # The next run still publishes a correct next version.
        published = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        started = time.monotonic()
        result = subprocess.run(train_command(tmp_path), env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=180, check=False)
        assert result.returncode == 0, result.stderr
        after = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        assert after == [*published, (published[-1] if published else 0) + 1], (published, after)
        full_run_s = time.monotonic() - started
        assert version_problem(model_dir / str(after[-1])) == ""

    assert watcher.problems == [], watcher.problems
    assert service_scan_problems(tmp_path / "models", MODEL) == []
    figures.record("crash-train", runs=len(outcomes), outcomes=outcomes,
                   temp_folders_left=len(temp_folders(model_dir)), versions=after,
                   watcher_scans=watcher.scans, full_run_s=round(full_run_s, 1))


def test_sigkilled_publish_loop_never_leaves_a_visible_partial_version(
    tmp_path: Path, rel_config: ReliabilityConfig
) -> None:
    rng = random.Random(rel_config.seed + 1)
    root = tmp_path / "models"
    model_dir = root / MODEL
    command = [sys.executable, "-m", "tests.reliability.harness.publisher", str(root), MODEL]
    kills = 4 * rel_config.crash_runs
    landed = 0
    with Watcher(model_dir) as watcher:
        for kill in range(kills):
            proc = subprocess.Popen([*command, "100000"], cwd=ROOT, env=clean_env({}),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            if kill % 2:  # the instant a temp folder is there: inside a publish
                known = set(temp_folders(model_dir))
                wait_for(lambda k=known: set(temp_folders(model_dir)) - k != set(), 30, proc)
            else:
                time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            proc.stdout.close()
            landed += proc.returncode == -9
            problems = service_scan_problems(root, MODEL)
            assert problems == [], f"after kill {kill}: {problems}"
        versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        result = subprocess.run([*command, "1"], cwd=ROOT, env=clean_env({}),
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout
        after = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        assert after == [*versions, (versions[-1] if versions else 0) + 1]

    assert watcher.problems == [], watcher.problems
    assert service_scan_problems(root, MODEL) == []
    assert landed == kills, f"only {landed} of {kills} publishers were still running when killed"
    figures.record("crash-publish", kills=kills, versions_published=len(after),
                   temp_folders_left=len(temp_folders(model_dir)), watcher_scans=watcher.scans,
                   versions_checked_by_watcher=len(watcher.seen))
