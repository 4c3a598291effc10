"""What a new user of `mlp-train` meets: typos get the closest key and where they came from,
--help and --print-config list every key, --version works. The real console script each time."""

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from training.config import DEFAULT_PRESET, TrainConfig, load_config

MLP_TRAIN = str(Path(sys.executable).parent / "mlp-train")


def mlp_train(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLP_TRAIN, *argv], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize(("argv", "line"), [
    (["hiden_sizes=[64]"], "command line 'hiden_sizes=[64]': unknown key 'hiden_sizes'; did you "
     "mean 'hidden_sizes'? (mlp-train train --help lists every key)"),
    (["learnin_rate=0.1", "l2=x"], "command line 'l2=x': l2: Input should be a valid number, "
     "unable to parse string as a number (got 'x'); command line 'learnin_rate=0.1': unknown key "
     "'learnin_rate'; did you mean 'learning_rate'? (mlp-train train --help lists every key)"),
    (["colour=blue"], "command line 'colour=blue': unknown key 'colour' (mlp-train train --help "
     "lists every key)"),
    (["weight_decay=0.1"], f"{DEFAULT_PRESET} + command line: weight_decay=0.1 only applies to "
     "optimizer 'adamw', got 'adam'; use l2 for the other optimizers"),
])
def test_config_errors_say_where_and_what_was_meant(argv: list[str], line: str,
                                                    tmp_path: Path) -> None:
    done = mlp_train("train", *argv, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"mlp-train train: error: {line}"]
    assert not (tmp_path / "models").exists()


def test_a_typo_in_a_preset_file_names_the_file(tmp_path: Path) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_text('hidden_sizes = [64]\nlearnig_rate = 0.01\n')
    done = mlp_train("train", "--config", str(preset), "epochs=1", cwd=tmp_path)
    assert done.stderr.splitlines() == [
        f"mlp-train train: error: {preset}: unknown key 'learnig_rate'; did you mean "
        "'learning_rate'? (mlp-train train --help lists every key)"]


def test_help_lists_every_key_with_default_and_meaning(tmp_path: Path) -> None:
    done = mlp_train("train", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for key, field in TrainConfig.model_fields.items():
        assert field.description, f"{key} has no docstring"
        shown = [line for line in done.stdout.splitlines() if line.split(" = ")[0] in
                 (key, f"# {key}")]
        assert len(shown) == 1, key
        assert field.description.split()[0] in shown[0], shown[0]
    assert 'hidden_sizes = [256]  # Units per hidden layer; [] is softmax regression.' in (
        done.stdout.splitlines())


def test_print_config_is_the_resolved_config_as_a_preset(tmp_path: Path) -> None:
    done = mlp_train("train", "--print-config", "epochs=3", "hidden_sizes=[64,32]", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "epochs = 3  # default 20; Upper bound on epochs" in done.stdout
    preset = tmp_path / "printed.toml"
    preset.write_text(done.stdout)
    assert set(tomllib.loads(done.stdout)) == set(TrainConfig.model_fields) - {"data_cache"}
    assert load_config(preset) == load_config(None, ["epochs=3", "hidden_sizes=[64,32]"])
    assert not (tmp_path / "models").exists() and not (tmp_path / "runs").exists()


def test_version(tmp_path: Path) -> None:
    done = mlp_train("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"mlp-train {version('mlp-serve')}\n")
