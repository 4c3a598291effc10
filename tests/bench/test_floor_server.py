"""bench/floor_server.py, the one-client floor bench/README.md compares mlp-serve with, must
answer what the model answers; a floor that skipped or garbled the work would flatter it."""

from __future__ import annotations

import http.client
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from serve_load import (  # noqa: E402
    free_port,
    json_body,
    pixels,
    realistic_model,
    server,
    write_version,
)


def test_floor_server_answers_what_onnxruntime_answers(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models", "bench-mlp", realistic_model())
    model = folder / "model.onnx"
    body = json_body(folder, 3).path.read_bytes()
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "floor_server.py"), str(model), str(port)]
    with server(command, port, dict(os.environ), tmp_path / "floor.log"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("POST", "/v2/models/bench-mlp/infer", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            status, answer = response.status, json.loads(response.read())
        finally:
            connection.close()
    assert status == 200
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(["probabilities", "label"],
                                        {"input": pixels(3).astype(np.float32)})
    outputs = {output["name"]: output for output in answer["outputs"]}
    assert outputs["label"]["data"] == labels.tolist()
    assert outputs["probabilities"]["shape"] == [3, 10]
    np.testing.assert_allclose(np.array(outputs["probabilities"]["data"]).reshape(3, 10),
                               probabilities, rtol=1e-5, atol=1e-7)
