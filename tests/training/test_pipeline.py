"""train_and_publish end to end on generated data: card, ONNX, run folder, behaviour."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.training.synthetic import fast_config, make_dataset, single_thread  # noqa: F401
from training.cli import main
from training.data import Dataset
from training.evaluate import evaluate_published
from training.fit import CPUINFO, cpu_has_native_bf16
from training.pipeline import RunResult, train_and_publish
from training.report import normalize_rows, run_title

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data() -> Dataset:
    return make_dataset(n_train=300, n_test=120, separation=20.0)


@pytest.fixture(scope="module")
def run(data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    tmp = tmp_path_factory.mktemp("pipeline")
    config = fast_config(tmp, epochs=6, standardize=True, l2=1e-4, dropout=0.1)
    return train_and_publish(config, quiet=True, dataset=data, command="mlp-train train l2=1e-4")


def test_publishes_version_one_with_both_files(run: RunResult) -> None:
    assert run.published_dir == Path(run.config.repository) / "tiny" / "1"
    assert sorted(p.name for p in run.published_dir.iterdir()) == ["model.json", "model.onnx"]
    assert run.onnx_path == run.published_dir / "model.onnx"
    assert run.onnx_size_bytes == run.onnx_path.stat().st_size


def test_model_card_follows_the_contract(run: RunResult, data: Dataset) -> None:
    assert run.published_dir is not None
    card = json.loads((run.published_dir / "model.json").read_text())
    onnx_bytes = run.onnx_path.read_bytes()
    assert card["schema_version"] == 1 and card["name"] == "tiny" and card["version"] == 1
    assert card["created_at"].endswith("Z")
    assert card["onnx"] == {"file": "model.onnx", "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
                            "opset": 18, "size_bytes": len(onnx_bytes)}
    assert card["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 784],
                               "range": [0, 255]}]
    assert card["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                               {"name": "label", "datatype": "INT64", "shape": [-1]}]
    assert card["labels"] == list(data.class_names)
    assert card["image_normalization"] == "resize-only"  # not MNIST: images are only resized
    assert card["config"] == run.config.model_dump(mode="json")
    assert card["data"] == {"name": "synthetic", "fingerprint": data.fingerprint(),
                            "splits": {"train": 225, "validation": 75, "test": 120}}
    training = card["training"]
    assert training["epochs_run"] == len(run.history) and 1 <= training["best_epoch"] <= 6
    assert training["parameters"] == 784 * 16 + 16 + 16 * 3 + 3
    metrics = card["metrics"]
    assert metrics["test_accuracy"] == run.test_accuracy > 0.8  # chance is 0.33
    assert np.array(metrics["confusion_matrix"]).sum() == 120
    assert [c["label"] for c in metrics["per_class"]] == list(data.class_names)
    assert card["parity"]["rows"] == 120 and card["parity"]["argmax_agreement"] == 1.0
    assert card["parity"]["max_abs_diff"] <= 1e-5


def test_model_card_records_provenance(run: RunResult) -> None:
    assert run.published_dir is not None
    origin = json.loads((run.published_dir / "model.json").read_text())["provenance"]
    assert origin["command"] == "mlp-train train l2=1e-4"
    assert (origin["torch"], origin["onnx"], origin["onnxruntime"]) == (
        torch.__version__, onnx.__version__, ort.__version__)
    assert origin["cpu"]["bf16_autocast"] is False and origin["cpu"]["flush_denormal"] is True
    assert origin["cpu"]["native_bf16"] == cpu_has_native_bf16(CPUINFO)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                          capture_output=True, text=True, check=False)
    if shutil.which("git") and head.returncode == 0:  # a checkout (CI clones one)
        assert origin["git_commit"] == head.stdout.strip()
        assert isinstance(origin["git_dirty"], bool)
    else:
        assert origin["git_commit"] is None


def test_cli_records_the_exact_command(data: Dataset, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "data.npz"
    np.savez(source, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
             y_test=data.y_test)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--quiet", "name=tiny", f"data={source}", "hidden_sizes=[16]", "epochs=4",
            "min_test_accuracy=0", "threads=1", "runs_dir=my runs"]
    assert main(argv) == 0
    card = json.loads(Path("models/tiny/1/model.json").read_text())
    assert card["provenance"]["command"] == (
        f"mlp-train train --quiet name=tiny data={source} 'hidden_sizes=[16]' epochs=4 "
        "min_test_accuracy=0 threads=1 'runs_dir=my runs'")


def test_onnx_metadata_carries_the_published_version(run: RunResult) -> None:
    props = {p.key: p.value for p in onnx.load(str(run.onnx_path)).metadata_props}
    assert (props["name"], props["version"]) == ("tiny", "1")


def test_run_folder_has_history_and_plots(run: RunResult) -> None:
    assert run.run_dir.parent == Path(run.config.runs_dir) / "tiny"
    history = json.loads((run.run_dir / "history.json").read_text())
    assert history["epochs"] == run.history and history["best_epoch"] == run.fit.best_epoch
    for name in ("learning_curves.png", "confusion_matrix.png"):
        assert (run.run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_are_titled_with_model_data_accuracy_and_run(run: RunResult) -> None:
    title = run_title(run.config, run.test_accuracy, run.run_dir)
    assert title == (f"tiny on synthetic, test accuracy {run.test_accuracy:.4f}, "
                     f"run {run.run_dir.name}")


def test_normalized_confusion_rows_are_shares_of_each_true_class() -> None:
    counts = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    assert normalize_rows(counts).tolist() == [[0.8, 0.2, 0.0], [0.25, 0.75, 0.0], [0, 0, 0]]


def test_onnxruntime_evaluation_matches_the_card(run: RunResult, data: Dataset) -> None:
    assert run.published_dir is not None
    metrics = evaluate_published(run.published_dir, data)
    assert metrics["test_accuracy"] == run.metrics["test_accuracy"]
    assert metrics["test_loss"] == pytest.approx(run.metrics["test_loss"], abs=1e-5)


def test_prediction_is_stable_under_tiny_pixel_noise(run: RunResult, data: Dataset) -> None:
    session = ort.InferenceSession(str(run.onnx_path), providers=["CPUExecutionProvider"])
    clean = data.x_test.astype(np.float32)
    noise = np.random.default_rng(0).uniform(-2.0, 2.0, clean.shape).astype(np.float32)
    noisy = np.clip(clean + noise, 0, 255)
    (labels_clean,) = session.run(["label"], {"input": clean})
    (labels_noisy,) = session.run(["label"], {"input": noisy})
    assert (labels_clean == labels_noisy).mean() >= 0.98


def test_without_publish_the_repository_stays_empty(data: Dataset, tmp_path: Path) -> None:
    config = fast_config(tmp_path, epochs=1)
    result = train_and_publish(config, quiet=True, publish=False, dataset=data)
    assert result.published_dir is None
    assert not (tmp_path / "models").exists()
    assert result.onnx_path == result.run_dir / "model.onnx" and result.onnx_path.is_file()


def test_evaluate_refuses_a_tampered_file(run: RunResult, data: Dataset, tmp_path: Path) -> None:
    from training.evaluate import ModelFileError

    assert run.published_dir is not None
    copy = tmp_path / "1"
    copy.mkdir()
    (copy / "model.json").write_bytes((run.published_dir / "model.json").read_bytes())
    (copy / "model.onnx").write_bytes(run.onnx_path.read_bytes() + b"\0")
    with pytest.raises(ModelFileError,
                       match=r"sha256 of model.onnx is [0-9a-f]{64} but model.json says"):
        evaluate_published(copy, data)
