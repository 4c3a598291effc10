"""bench/floor_server.py, the one-client floor bench/README.md compares mlp-serve with, must
answer what the model answers; a floor that skipped or garbled the work would flatter it."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from serve_load import free_port, json_body, pixels, realistic_model, write_version  # noqa: E402


def post(port: int, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/v2/models/bench-mlp/infer", body,
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_floor_server_answers_what_onnxruntime_answers(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models", "bench-mlp", realistic_model())
    model = folder / "model.onnx"
    body = json_body(folder, 3).path.read_bytes()
    port = free_port()
    with (tmp_path / "floor.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "floor_server.py"),
                                    str(model), str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        answered = None
        while answered is None and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "floor.log").read_text()
            with contextlib.suppress(OSError):
                answered = post(port, body)
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(30)
    assert answered is not None and answered[0] == 200, answered
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(["probabilities", "label"],
                                        {"input": pixels(3).astype(np.float32)})
    outputs = {output["name"]: output for output in json.loads(answered[1])["outputs"]}
    assert outputs["label"]["data"] == labels.tolist()
    assert outputs["probabilities"]["shape"] == [3, 10]
    np.testing.assert_allclose(np.array(outputs["probabilities"]["data"]).reshape(3, 10),
                               probabilities, rtol=1e-5, atol=1e-7)
