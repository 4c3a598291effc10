"""mlp-train without the `train` extra (as in the service image): one line and exit 1, no traceback.

The real console script runs in a subprocess whose sitecustomize puts None into sys.modules for
the hidden modules, so `import torch` raises ImportError there as if torch were not installed.
"""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from training.dependencies import TRAIN_MODULES, missing_modules

ROOT = Path(__file__).resolve().parents[2]
MLP_TRAIN = str(Path(sys.executable).parent / "mlp-train")
EXPECTED = ("needs the training dependencies ({} not installed); install them with "
            "pip install 'mlp-serve[train]' or use the training image (training/Dockerfile)")


def run_without(hidden: list[str], argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the installed mlp-train with `hidden` modules made unimportable."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in hidden))
    return subprocess.run([MLP_TRAIN, *argv], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(site), "PATH": ""}, timeout=60)


def test_the_list_is_pyprojects_train_extra() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["train"]
    assert sorted(re.split(r"[\s\[=<>~!;]", spec, maxsplit=1)[0] for spec in extra) == sorted(
        TRAIN_MODULES)


def test_nothing_is_missing_here_and_a_hidden_module_is(monkeypatch: pytest.MonkeyPatch) -> None:
    assert missing_modules() == []
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert missing_modules() == ["onnxscript"]


@pytest.mark.parametrize("argv", [
    ["train"], ["train", "--skip-if-published"], ["evaluate", "models/x/1", "--data", "mnist-5k"],
    ["sweep", "--grid", "no-such.toml"],
])
def test_without_torch_every_command_says_what_to_install(argv: list[str], tmp_path: Path) -> None:
    done = run_without(["torch", "tqdm"], argv, tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"mlp-train {argv[0]}: error: " + EXPECTED.format("torch, tqdm")]
    assert done.stdout == ""
    assert not (tmp_path / "models").exists()


def test_help_needs_no_torch(tmp_path: Path) -> None:
    done = run_without(["torch"], ["train", "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage: mlp-train train" in done.stdout


def test_a_broken_install_is_one_line_too(tmp_path: Path) -> None:
    """Every top-level package is there but one of its submodules is not: still no traceback."""
    done = run_without(["matplotlib.figure"], ["sweep", "--grid", "no-such.toml"], tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "mlp-train sweep: error: " + EXPECTED.format("matplotlib.figure")]
