"""A real model trained once per session by the real `mlp-train` on the bundled MNIST digits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MLP_TRAIN = str(Path(sys.executable).parent / "mlp-train")
PRESET = Path(__file__).resolve().parents[2] / "training" / "configs" / "mnist-5k.toml"


@pytest.fixture(scope="session")
def mnist_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ holding mnist-mlp version 1: the mnist-5k preset made fast (5 epochs, one
    256-unit layer, no shifting; ~0.92 test accuracy)."""
    root = tmp_path_factory.mktemp("mnist-repo")
    train = subprocess.run(
        [MLP_TRAIN, "train", "--config", str(PRESET), "--quiet", "epochs=5",
         "hidden_sizes=[256]", "augment_shift=0", "threads=1",
         f"repository={root / 'models'}", f"runs_dir={root / 'runs'}"],
        capture_output=True, text=True, timeout=600, cwd=root,
    )
    assert train.returncode == 0, train.stderr
    return root / "models"
