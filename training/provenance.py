"""Where a model came from: library versions, code commit, CPU settings and the command.

Goes into the model card as `provenance`, so a served model can be rebuilt (or its numbers
doubted) without asking who trained it.
"""

import platform
import subprocess
from pathlib import Path

import onnx
import onnxruntime
import torch

from training.config import TrainConfig
from training.fit import CPUINFO, cpu_has_native_bf16

CODE_DIR = Path(__file__).resolve().parent
GIT_TIMEOUT_S = 5


def git(*args: str) -> str | None:
    """Output of a git command run in the code's folder; None without git or outside a checkout."""
    try:
        done = subprocess.run(["git", *args], cwd=CODE_DIR, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict[str, object]:
    """The commit the training code was at, and whether training/ had uncommitted changes."""
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = git("status", "--porcelain", "--", str(CODE_DIR))
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def provenance(config: TrainConfig, command: str | None) -> dict[str, object]:
    """The card's `provenance` section."""
    return {
        "command": command,
        **code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cpu": {
            "machine": platform.machine(),
            "bf16_autocast": config.bf16,
            "native_bf16": cpu_has_native_bf16(CPUINFO),
            "flush_denormal": True,  # fit() sets it
            "torch_threads": torch.get_num_threads(),
        },
    }
