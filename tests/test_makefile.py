"""The Makefile verbs a new user runs, read with `make -n` (what would run, nothing installed):
CPU torch at the pinned version, a demo without the dev extra, `make serve` out of the box."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(target: str, tmp_path: Path, **env: str) -> str:
    """`make -n target` against a fresh (absent) virtualenv, so every step shows."""
    environment = {k: v for k, v in os.environ.items() if k != "MLP_API_KEY"} | env
    done = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_torch_is_the_cpu_build_at_the_exact_pin(tmp_path: Path) -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["train"]
    (pin,) = [spec for spec in extra if spec.startswith("torch")]
    assert re.fullmatch(r"torch==[0-9.]+", pin)
    steps = dry_run("install", tmp_path)
    torch_step = next(line for line in steps.splitlines() if f"'{pin}'" in line)
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_step
    assert "--no-deps" in torch_step and "--retries 1" in torch_step
    assert steps.index(torch_step) < steps.index("-e '.[train,serve,dev]'")


def test_demo_installs_no_dev_extra(tmp_path: Path) -> None:
    steps = dry_run("demo", tmp_path)
    assert "-e '.[train,serve]'" in steps and "serve,dev]" not in steps
    assert "mlp-train train --config training/configs/mnist-5k.toml" in steps


def test_serve_works_without_a_key_and_uses_one_when_set(tmp_path: Path) -> None:
    assert "mlp-serve --repository models --no-control" in dry_run("serve", tmp_path)
    with_key = dry_run("serve", tmp_path, MLP_API_KEY="k" * 32)
    assert "mlp-serve --repository models" in with_key and "--no-control" not in with_key
