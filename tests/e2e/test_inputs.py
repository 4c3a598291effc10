"""Inputs as people have them, against a real trained model served by the real `mlp-serve`:
real mnist-5k test digits raw, scaled to 0..1 (refused, or accepted when declared), as 28x28
lists (`x_test[0].tolist()`), through V1, V2 JSON and tritonclient's binary tensors; and a PNG
posted to a JSON route."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.service.servers import ServerProcess
from training.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]
MLP_TRAIN = str(Path(sys.executable).parent / "mlp-train")
MODEL = "mnist-mlp"
V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"
SCALED_V1 = ("instances: row 0 looks scaled to 0..1 (its brightest pixel is 1.0) but model "
             "'mnist-mlp' takes raw pixels 0..255; multiply by 255 before sending, or send "
             '"pixel_range": "0..1" next to "instances"')
SCALED_V2 = ("input 'input': row 0 looks scaled to 0..1 (its brightest pixel is 1.0) but model "
             "'mnist-mlp' takes raw pixels 0..255; multiply by 255 before sending, or send "
             '"parameters": {"pixel_range": "0..1"}')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A small real model of the mnist-5k preset (fast settings), served on a free port."""
    folder = tmp_path_factory.mktemp("inputs")
    train = subprocess.run(
        [MLP_TRAIN, "train", "--quiet", "epochs=3", "hidden_sizes=[64]", "augment_shift=0",
         "threads=1", f"repository={folder / 'models'}", f"runs_dir={folder / 'runs'}"],
        capture_output=True, text=True, timeout=600, cwd=folder)
    assert train.returncode == 0, train.stderr
    process = ServerProcess(folder / "models")
    try:
        process.wait_ready(timeout_s=120)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """200 real test digits (20 of each), as 0..255 uint8 [200, 28, 28], and their labels."""
    data = load_dataset("mnist-5k")
    chosen = np.concatenate([np.flatnonzero(data.y_test == d)[:20] for d in range(10)])
    return data.x_test[chosen].reshape(-1, 28, 28), data.y_test[chosen]


def v1_labels(client: httpx.Client, body: dict[str, object]) -> np.ndarray:
    response = client.post(V1, json=body)
    assert response.status_code == 200, response.text
    return np.array([p["label"] for p in response.json()["predictions"]])


def test_scaled_digits_are_refused_or_converted_never_a_silent_wrong_answer(
    server: ServerProcess, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    scaled = images / 255.0  # what every Keras or PyTorch tutorial sends
    with httpx.Client(base_url=server.url, timeout=60) as client:
        raw = v1_labels(client, {"instances": images.tolist()})  # [N, 28, 28] as people have it
        assert (raw == labels).mean() >= 0.85  # a real model on real digits (chance: 0.1)

        refused = client.post(V1, json={"instances": scaled.tolist()})
        assert (refused.status_code, refused.json()) == (400, {"error": SCALED_V1})
        declared = v1_labels(client, {"instances": scaled.tolist(), "pixel_range": "0..1"})
        assert np.array_equal(declared, raw)

        tensor = {"name": "input", "shape": [len(images), 28, 28], "datatype": "FP32",
                  "data": scaled.tolist()}
        refused = client.post(V2, json={"inputs": [tensor]})
        assert (refused.status_code, refused.json()) == (400, {"error": SCALED_V2})
        answer = client.post(V2, json={"parameters": {"pixel_range": "0..1"}, "inputs": [tensor],
                                       "outputs": [{"name": "label"}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == raw.tolist()

        # raw pixels that really are this dark pass when the request says they are raw
        dark = client.post(V1, json={"instances": [[1] * 784], "pixel_range": "0..255"})
        assert dark.status_code == 200, dark.text
        wrong = client.post(V1, json={"instances": scaled[:1].tolist(), "pixel_range": "0-1"})
        assert wrong.json() == {"error": "pixel_range is '0-1'; expected \"0..255\" (raw "
                                "pixels, the default) or \"0..1\" (pixels divided by 255)"}
        outside = client.post(V1, json={"instances": images[:1].tolist(), "pixel_range": "0..1"})
        assert outside.status_code == 400
        assert outside.json()["error"].endswith("is outside 0..1; with pixel_range \"0..1\" "
                                                "every pixel must be in 0..1")


def test_tritonclient_binary_tensors_with_the_declared_range(
    server: ServerProcess, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images = digits[0]
    scaled = (images[:10] / 255.0).astype(np.float32)
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = httpclient.InferInput("input", list(scaled.shape), "FP32")
    tensor.set_data_from_numpy(scaled)  # binary, [10, 28, 28]
    wanted = [httpclient.InferRequestedOutput("label")]
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, [tensor], outputs=wanted)
    assert refused.value.message() == SCALED_V2
    result = client.infer(MODEL, [tensor], outputs=wanted, parameters={"pixel_range": "0..1"})
    raw = httpclient.InferInput("input", [10, 784], "FP32")
    raw.set_data_from_numpy(images[:10].reshape(10, 784).astype(np.float32))
    expected = client.infer(MODEL, [raw], outputs=wanted).as_numpy("label")
    assert result.as_numpy("label").tolist() == expected.tolist()
    client.close()


def test_one_image_as_x_test_0_tolist(server: ServerProcess) -> None:
    sample = json.loads((ROOT / "samples" / "digit-7.v1.json").read_text())
    image = np.array(sample["instances"][0]).reshape(28, 28).tolist()  # x_test[0].tolist()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert v1_labels(client, {"instances": [image]}).tolist() == [7]
        v2 = client.post(V2, json={"inputs": [{"name": "input", "shape": [1, 28, 28],
                                               "datatype": "FP32", "data": [image]}]})
        assert v2.status_code == 200 and v2.json()["outputs"][1]["data"] == [7]
        unbatched = client.post(V2, json={"inputs": [{"name": "input", "shape": [28, 28],
                                                      "datatype": "FP32", "data": image}]})
        assert unbatched.json() == {"error": (
            "input 'input': shape [28, 28] does not fit the model; expected [N, 784] (N rows of "
            "784 raw pixel values); one 28x28 image needs a batch dimension: shape [1, 28, 28]")}


def test_a_png_on_a_json_route_says_json_was_expected(server: ServerProcess) -> None:
    png = (ROOT / "samples" / "digit-7.png").read_bytes()
    response = httpx.post(server.url + V2, content=png,  # as `curl -d @digit-7.png` sends it
                          headers={"content-type": "application/x-www-form-urlencoded"},
                          timeout=60)
    assert (response.status_code, response.json()) == (400, {"error": (
        "request body is not JSON but binary data (a PNG image); this route takes a JSON "
        "object (Content-Type: application/json)")})


def test_a_png_on_v1_is_predicted_whatever_its_content_type(server: ServerProcess) -> None:
    png = (ROOT / "samples" / "digit-7.png").read_bytes()
    response = httpx.post(server.url + V1, content=png,  # as `curl -d @digit-7.png` sends it
                          headers={"content-type": "application/x-www-form-urlencoded"},
                          timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == 7
