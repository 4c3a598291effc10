"""The real `mlp-train` on the bundled mnist-5k digits: publish, then check what the service reads
(the card, the ONNX through onnxruntime) and that `mlp-train evaluate` agrees."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from training.data import load_dataset

MLP_TRAIN = str(Path(sys.executable).parent / "mlp-train")
PRESET = Path(__file__).resolve().parents[2] / "training" / "configs" / "mnist-5k.toml"


@pytest.mark.slow
def test_train_publish_and_evaluate_mnist_5k(tmp_path: Path) -> None:
    train = subprocess.run(
        # the real preset, made fast: fewer epochs, a narrower layer, no (slower-to-converge)
        # shifting; the full preset's numbers are in the README
        [MLP_TRAIN, "train", "--config", str(PRESET), "--quiet", "epochs=5", "hidden_sizes=[256]",
         "augment_shift=0", "threads=1",
         f"repository={tmp_path / 'models'}", f"runs_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr
    version_dir = tmp_path / "models" / "mnist-mlp" / "1"
    assert f"published: {version_dir}" in train.stdout
    assert f"mlp-serve --repository {tmp_path / 'models'}" in train.stdout

    card = json.loads((version_dir / "model.json").read_text())
    onnx_bytes = (version_dir / "model.onnx").read_bytes()
    assert card["onnx"]["sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert card["data"]["name"] == "mnist-5k"
    assert card["image_normalization"] == "mnist-centred"
    assert card["data"]["splits"] == {"train": 3800, "validation": 200, "test": 1000}
    assert card["labels"] == [str(d) for d in range(10)]
    assert card["metrics"]["test_accuracy"] >= 0.9  # chance is 0.1
    assert card["parity"] == {**card["parity"], "rows": 1000, "argmax_agreement": 1.0}
    props = {p.key: p.value for p in onnx.load_from_string(onnx_bytes).metadata_props}
    assert (props["name"], props["version"], props["producer"]) == ("mnist-mlp", "1", "mlp-serve")

    data = load_dataset("mnist-5k")
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(None, {"input": data.x_test.astype(np.float32)})
    assert np.array_equal(labels, probabilities.argmax(axis=1))
    assert (labels == data.y_test).mean() == pytest.approx(card["metrics"]["test_accuracy"])

    evaluate = subprocess.run(
        [MLP_TRAIN, "evaluate", str(version_dir), "--data", "mnist-5k", "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    metrics = json.loads(evaluate.stdout)
    assert metrics["test_accuracy"] == card["metrics"]["test_accuracy"]
    assert metrics["test_loss"] == pytest.approx(card["metrics"]["test_loss"], abs=1e-5)
