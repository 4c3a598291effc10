"""HotPath: the inference routes answer exactly as through FastAPI, only cheaper."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.http.app import create_app
from service.http.fastpath import HotPath
from tests.service.conftest import MODEL, pixels, settings_for
from tests.service.servers import serve_in_thread

ROWS = pixels(3)
HEADER = json.dumps({
    "id": "bin-1",
    "inputs": [{"name": "input", "shape": [3, 784], "datatype": "FP32",
                "parameters": {"binary_data_size": ROWS.nbytes}}],
    "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}},
                {"name": "label"}],
}).encode()
JSON_BODY = json.dumps({"id": "j-1", "inputs": [{"name": "input", "shape": [3, 784],
                                                  "datatype": "FP32",
                                                  "data": ROWS.ravel().tolist()}]}).encode()
V1_BODY = json.dumps({"instances": ROWS.tolist()}).encode()
BAD_ROW = json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP64",
                                   "data": [0] * 783 + [float("1e300")]}]}).encode()
CASES: list[tuple[str, bytes, dict[str, str]]] = [
    (f"/v2/models/{MODEL}/infer", JSON_BODY, {}),
    (f"/v2/models/{MODEL}/versions/2/infer", JSON_BODY, {"accept-encoding": "gzip"}),
    (f"/v2/models/{MODEL}/infer", HEADER + ROWS.tobytes(),
     {"inference-header-content-length": str(len(HEADER))}),
    (f"/v2/models/{MODEL}/infer", gzip.compress(HEADER + ROWS.tobytes()),
     {"inference-header-content-length": str(len(HEADER)), "content-encoding": "gzip"}),
    (f"/v2/models/{MODEL}/infer", HEADER + ROWS.tobytes()[:-1],
     {"inference-header-content-length": str(len(HEADER))}),
    (f"/v2/models/{MODEL}/infer", b"{not json", {}),
    (f"/v2/models/{MODEL}/infer", BAD_ROW, {}),
    (f"/v2/models/{MODEL}/infer", b"x" * 2_000_001, {}),
    (f"/v2/models/{MODEL}/versions/1/infer", JSON_BODY, {}),
    (f"/v2/models/{MODEL}/versions/1%C2%B9/infer", JSON_BODY, {}),
    ("/v2/models/nope/infer", JSON_BODY, {}),
    (f"/v1/models/{MODEL}:predict", V1_BODY, {}),
    (f"/v1/models/{MODEL}:predict", b'{"instances": [[1, 2]]}', {}),
    # inputs as people have them (service/models/pixels.py): 0..1, declared or not; 28x28; PNG
    (f"/v2/models/{MODEL}/infer", json.dumps({"inputs": [{
        "name": "input", "shape": [3, 28, 28], "datatype": "FP32",
        "data": (ROWS / 255).tolist()}]}).encode(), {}),
    (f"/v2/models/{MODEL}/infer", json.dumps({"parameters": {"pixel_range": "0..1"}, "inputs": [{
        "name": "input", "shape": [3, 28, 28], "datatype": "FP32",
        "data": (ROWS / 255).tolist()}]}).encode(), {}),
    (f"/v1/models/{MODEL}:predict", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}),
]


def answers(client: httpx.Client) -> list[tuple[int, dict[str, str], bytes]]:
    """Status, headers (without the per-request id) and body of every case."""
    seen = []
    for path, body, headers in CASES:
        response = client.post(path, content=body, headers=headers)
        kept = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
        seen.append((response.status_code, kept, response.content))
    return seen


def test_hot_path_answers_byte_for_byte_as_fastapi_routes(
    shared_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []
    serve = HotPath._serve

    async def counted(self: HotPath, route: Any, *args: Any) -> None:
        served.append(route.path)
        await serve(self, route, *args)

    monkeypatch.setattr(HotPath, "_serve", counted)
    hot_app, plain_app = (create_app(settings_for(shared_repo)) for _ in range(2))
    plain_app.hot_routes = ()  # every request through FastAPI's routing, as before HotPath
    with serve_in_thread(hot_app) as hot, serve_in_thread(plain_app) as plain:
        hot_answers, plain_answers = answers(hot), answers(plain)
        metrics = [client.get("/metrics").text for client in (hot, plain)]
    assert len(served) == len(CASES)  # the hot app took HotPath, the plain one never did
    statuses = [status for status, _, _ in hot_answers]
    assert statuses == [200, 200, 200, 200, 400, 400, 400, 413, 404, 400, 404, 200, 400,
                        400, 200, 400]
    assert hot_answers == plain_answers
    assert hot_answers[1][1]["content-encoding"] == "gzip"
    _, binary_headers, binary_body = hot_answers[2]
    tensors = binary_body[int(binary_headers["inference-header-content-length"]):]
    probabilities = np.frombuffer(tensors, np.float32).reshape(3, 10)  # binary, as asked
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    requests_lines = [sorted(line for line in text.splitlines()
                             if line.startswith("mlp_requests_total{")) for text in metrics]
    assert requests_lines[0] == requests_lines[1]
    assert any('endpoint="/v2/models/{name}/infer"' in line and 'status="413"' in line
               for line in requests_lines[0])


def test_a_post_route_that_shadows_a_hot_path_refuses_to_start(shared_repo: Path) -> None:
    app = create_app(settings_for(shared_repo))

    @app.post("/v1/models/{name}")
    async def shadow(name: str) -> None:
        """Would match POST /v1/models/x:predict before the predict route."""

    with pytest.raises(RuntimeError,
                       match=re.escape("may also match POST /v1/models/{name}:predict")):
        app.build_middleware_stack()
