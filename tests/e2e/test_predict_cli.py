"""`mlp-serve predict` on real test digits: pixel rows (NPZ, CSV) and a folder of PNGs give what
onnxruntime and the service give; bad input stops with one line."""

from __future__ import annotations

import base64
import csv
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.http.app import create_app
from service.settings import Settings
from tests.e2e.digits import mnist_test_digits, png
from tests.service.servers import serve_in_thread

MLP_SERVE = str(Path(sys.executable).parent / "mlp-serve")


def predict(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLP_SERVE, "predict", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def read_output(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as stream:
        rows = list(csv.reader(stream))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return mnist_test_digits()


def test_npz_and_csv_rows(mnist_repo: Path, digits: tuple[np.ndarray, np.ndarray],
                          tmp_path: Path) -> None:
    x, y = digits
    model = mnist_repo / "mnist-mlp" / "1"
    session = ort.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(None, {"input": x.astype(np.float32)})
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_test=x.reshape(-1, 28, 28), y_test=y)
    table = tmp_path / "digits.csv.gz"  # mlp-train's format: header, label, 784 pixels
    with gzip.open(table, "wt") as stream:
        stream.write("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n")
        np.savetxt(stream, np.column_stack([y, x]), fmt="%d", delimiter=",")

    done = predict(mnist_repo / "mnist-mlp", npz, "-o", tmp_path / "npz.csv", "--batch-size", "64")
    assert done.returncode == 0, done.stderr
    accuracy = (labels == y).mean()
    assert f"predicted {len(y)} rows with mnist-mlp version 1" in done.stderr
    assert f"accuracy {accuracy:.4f} against the input's labels" in done.stderr
    header, rows = read_output(tmp_path / "npz.csv")
    assert header == ["id", "label", "class_name", *(f"p_{d}" for d in range(10))]
    assert [r[0] for r in rows] == [str(i) for i in range(len(y))]
    assert [int(r[1]) for r in rows] == labels.tolist()
    np.testing.assert_allclose(np.array([r[3:] for r in rows], float), probabilities,
                               rtol=1e-5, atol=1e-6)

    done = predict(model, table, "-o", tmp_path / "csv.csv", "--quiet")
    assert done.returncode == 0 and done.stderr == ""
    assert read_output(tmp_path / "csv.csv")[1] == rows  # same rows, same text


def test_a_folder_of_images_is_normalized_as_the_service_does(
        mnist_repo: Path, digits: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, _ = digits
    folder = tmp_path / "pngs"
    folder.mkdir()
    blobs = [png(row) for row in x[:40]]
    for index, blob in enumerate(blobs):
        (folder / f"digit-{index:03d}.png").write_bytes(blob)
    (folder / "notes.txt").write_text("not an image: skipped")
    done = predict(mnist_repo / "mnist-mlp", folder, "-o", tmp_path / "out.csv",
                   "--batch-size", "16")
    assert done.returncode == 0, done.stderr
    _, rows = read_output(tmp_path / "out.csv")
    settings = Settings(repository=mnist_repo, control_enabled=False)  # type: ignore[call-arg]
    with serve_in_thread(create_app(settings)) as http:
        answer = http.post("/v1/models/mnist-mlp:predict", json={"instances": [
            {"image_bytes": {"b64": base64.b64encode(blob).decode()}} for blob in blobs]})
    served = answer.json()["predictions"]
    assert [r[0] for r in rows] == [f"digit-{i:03d}.png" for i in range(40)]
    assert [int(r[1]) for r in rows] == [p["label"] for p in served]
    np.testing.assert_allclose(np.array([r[3:] for r in rows], float),
                               [p["probabilities"] for p in served], rtol=1e-5, atol=1e-6)


def test_bad_input_stops_with_one_line(mnist_repo: Path, tmp_path: Path) -> None:
    model = mnist_repo / "mnist-mlp"
    table = tmp_path / "bad.csv"
    table.write_text("\n".join(",".join(["0"] * 784) for _ in range(2)) + "\n"
                     + ",".join(["0"] * 5 + ["300"] + ["0"] * 778) + "\n")
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(np.zeros(784, np.uint8)))
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cases = [
        ((model, table), f"{table} line 3, pixel 5: value 300.0 is not a raw pixel value in "
                         "0..255"),
        ((model, folder), f"{folder / 'b.png'}: corrupt PNG data"),
        ((tmp_path / "nowhere", table), f"MODEL_DIR {str(tmp_path / 'nowhere')!r} is not a "
                                        "folder; expected models/<name>/<version> or "
                                        "models/<name>"),
        ((model, tmp_path / "missing.csv"), f"INPUT {str(tmp_path / 'missing.csv')!r} does "
                                            "not exist"),
    ]
    for (model_dir, source), message in cases:
        done = predict(model_dir, source, "-o", tmp_path / "out.csv")
        assert done.returncode == 1
        assert done.stderr.startswith(f"mlp-serve predict: {message}"), done.stderr
        assert len(done.stderr.splitlines()) == 1
