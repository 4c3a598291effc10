"""mlp-train: help on every command, one-line errors with a non-zero exit, train and evaluate."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.training.synthetic import make_dataset, single_thread  # noqa: F401
from training.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")
MLP_TRAIN = str(Path(sys.executable).parent / "mlp-train")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["evaluate", "--help"]])
def test_help_on_every_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: mlp-train" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "learnin_rate=0.1"], "unknown key 'learnin_rate'"),
        (["train", "--config", "nope.toml"], "config file nope.toml does not exist"),
        (["train", "data=/no/such/file.npz", "--quiet"], "/no/such/file.npz"),
        (["evaluate", "no/such/dir", "--data", "mnist-5k"], "no/such/dir: model.json is missing"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert lines[0].startswith(f"mlp-train {argv[0]}: error: ")
    assert not list(tmp_path.rglob("model.onnx"))


def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    done = subprocess.run([MLP_TRAIN, "train", "hidden_sizes=[0]"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("mlp-train train: error: ")
    assert line.endswith("command line 'hidden_sizes=[0]': hidden_sizes.0: Input should be greater "
                         "than 0 (got 0)")


def tiny_npz(folder: Path, n_train: int, n_test: int) -> Path:
    """A small, easily separable data set as a Keras-style .npz file."""
    data = make_dataset(n_train=n_train, n_test=n_test, separation=20.0)
    source = folder / "tiny.npz"
    np.savez(source, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
             y_test=data.y_test)
    return source


def test_train_then_evaluate_a_user_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tiny_npz(tmp_path, n_train=240, n_test=60)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--quiet", "name=tiny", f"data={source}", "hidden_sizes=[16]", "epochs=10",
            "threads=1", "standardize=true"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "published: models/tiny/1" in out
    assert "serve it with: mlp-serve --repository models" in out
    assert main(["evaluate", "models/tiny/1", "--data", str(source)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["evaluate", "models/tiny/1", "--data", "mnist-5k"]) == 1
    assert "predicts 3 classes but mnist-5k has 10" in capsys.readouterr().err


def test_skip_if_published_trains_into_an_empty_repository_then_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compose `train` job: the first `up` trains and publishes, later ones leave it alone."""
    source = tiny_npz(tmp_path, n_train=120, n_test=30)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--skip-if-published", "--quiet", "name=tiny", f"data={source}",
            "hidden_sizes=[8]", "epochs=1", "threads=1", "repository=repo",
            "min_test_accuracy=0"]  # one epoch on 120 rows: about chance, and that is fine here
    assert main(argv) == 0
    assert "published: repo/tiny/1" in capsys.readouterr().out
    runs = list(Path("runs/tiny").iterdir())

    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "tiny version 1 is already published in repo; not training (--skip-if-published)"]
    assert captured.err == ""
    assert sorted(p.name for p in Path("repo/tiny").iterdir()) == ["1"]
    assert list(Path("runs/tiny").iterdir()) == runs  # no training run either

    assert main([*argv, "name=tiny2"]) == 0  # another name in the same repository still trains
    assert "published: repo/tiny2/1" in capsys.readouterr().out


def test_skip_if_published_and_no_publish_exclude_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--skip-if-published", "--no-publish"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
