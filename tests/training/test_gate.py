"""The quality gate: diverged, inaccurate or worse-than-published models are never published."""

import math
from pathlib import Path

import numpy as np
import pytest

from tests.training.synthetic import fast_config, make_dataset, single_thread  # noqa: F401
from training.cli import main
from training.data import Dataset
from training.fit import is_diverged
from training.gate import QualityGateError, min_accuracy
from training.pipeline import train_and_publish
from training.publish import published_versions

pytestmark = pytest.mark.usefixtures("single_thread")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("overrides", [["learning_rate=1e9", "epochs=2"], ["learning_rate=5.0"]])
def test_the_default_preset_with_an_exploding_rate_publishes_nothing(
    overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both used to exit 0 and publish a 10-15% model as the latest version."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--quiet", "threads=1", *overrides]) == 1
    line = one_error_line(capsys)
    assert line.startswith("mlp-train train: error: training diverged: mean train loss ")
    assert "(divergence_factor 10 x ln 10 classes); lower learning_rate" in line
    assert not Path("models").exists()


def test_a_finite_but_exploded_loss_counts_as_divergence(tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    assert is_diverged(3.3e21, 10, config)  # what learning_rate=1e9 reached: finite
    assert is_diverged(math.nan, 10, config) and is_diverged(math.inf, 10, config)
    assert not is_diverged(2.5, 10, config)  # just above a uniform guess (2.30): still learning
    assert is_diverged(2.5, 10, config.model_copy(update={"divergence_factor": 1.05}))


def test_default_minimum_is_halfway_from_chance(tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    assert min_accuracy(config, 10) == pytest.approx(0.55)
    assert min_accuracy(config, 2) == pytest.approx(0.75)
    assert min_accuracy(config.model_copy(update={"min_test_accuracy": 0.9}), 10) == 0.9


def random_label_npz(folder: Path) -> Path:
    """Training labels drawn at random: nothing to learn, test accuracy near chance (1/3)."""
    data = make_dataset(n_train=240, n_test=90, label_noise=1.0, seed=3)
    source = folder / "random-labels.npz"
    np.savez(source, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
             y_test=data.y_test)
    return source


def test_a_model_at_chance_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = random_label_npz(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--quiet", "name=tiny", f"data={source}", "hidden_sizes=[16]", "epochs=3",
            "threads=1"]
    assert main(argv) == 1
    line = one_error_line(capsys)
    assert line.startswith("mlp-train train: error: not published: test accuracy 0.")
    assert line.endswith(" is below 0.6667 (min_test_accuracy 'halfway' from chance to 1; set a "
                         "number to change it); chance is 0.3333 for 3 classes")
    assert published_versions(Path("models"), "tiny") == []

    assert main([*argv, "min_test_accuracy=0.0"]) == 0  # the minimum is the user's to set
    assert published_versions(Path("models"), "tiny") == [1]


@pytest.fixture(scope="module")
def learnable() -> Dataset:
    return make_dataset(n_train=300, n_test=120, separation=20.0)


def test_not_worse_than_the_latest_published_version(learnable: Dataset, tmp_path: Path) -> None:
    good = fast_config(tmp_path, epochs=6, standardize=True, publish_if_not_worse=True)
    first = train_and_publish(good, quiet=True, dataset=learnable)
    assert first.published_dir is not None and first.test_accuracy > 0.9

    weak = good.model_copy(update={"learning_rate": 1e-6, "epochs": 1, "min_test_accuracy": 0.0})
    with pytest.raises(QualityGateError) as refused:
        train_and_publish(weak, quiet=True, dataset=learnable)
    message = str(refused.value)
    assert message.startswith("not published: test accuracy 0.")
    assert message.endswith(
        f" is below {first.test_accuracy:.4f} of the latest published version "
        f"{first.published_dir} on the same synthetic test split (120 rows; publish_if_not_worse)")
    assert published_versions(good.repository, "tiny") == [1]

    # an equally good model is not worse: same config and seed, same weights, same accuracy
    second = train_and_publish(good, quiet=True, dataset=learnable)
    assert second.published_dir == Path(good.repository) / "tiny" / "2"

    # without the opt-in the weak run publishes (it passes the minimum it was given)
    train_and_publish(weak.model_copy(update={"publish_if_not_worse": False}), quiet=True,
                      dataset=learnable)
    assert published_versions(good.repository, "tiny") == [1, 2, 3]


def test_a_latest_version_that_cannot_be_compared_refuses(
    learnable: Dataset, tmp_path: Path
) -> None:
    config = fast_config(tmp_path, epochs=6, standardize=True, publish_if_not_worse=True)
    first = train_and_publish(config, quiet=True, dataset=learnable)
    assert first.published_dir is not None
    (first.published_dir / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(QualityGateError, match=r"^not published: cannot compare with .*tiny/1 "
                       r"\(publish_if_not_worse\): .*sha256 of model\.onnx is [0-9a-f]+ but "
                       r"model\.json says"):
        train_and_publish(config, quiet=True, dataset=learnable)
