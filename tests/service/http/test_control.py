"""Model control behind the API key: index, load (verify, then swap), unload."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from service.http.app import create_app
from tests.service.conftest import MODEL, pixels, reference, settings_for
from tests.service.model_repo import write_model
from tests.service.servers import API_KEY, serve_in_thread

AUTH = {"Authorization": f"Bearer {API_KEY}"}
LOAD = f"/v2/repository/models/{MODEL}/load"
INFER = f"/v2/models/{MODEL}/infer"


def infer(client: httpx.Client, rows_seed: int = 0) -> httpx.Response:
    rows = pixels(1, rows_seed)
    body = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}
    return client.post(INFER, content=json.dumps(body))


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-key-0123456789"}, {"X-API-Key": "nope"},
    {"Authorization": API_KEY}, {"Authorization": f"Basic {API_KEY}"},
])
def test_control_without_a_valid_key_is_401_and_changes_nothing(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    for path in (LOAD, f"/v2/repository/models/{MODEL}/unload", "/v2/repository/index"):
        response = client.post(path, json={"parameters": {"version": 1}}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"error": "model control needs a valid API key: send "
                                   "'Authorization: Bearer <key>' or 'X-API-Key: <key>'"}
    assert infer(client).json()["model_version"] == "2"


def test_index_lists_versions_and_state(client: httpx.Client) -> None:
    response = client.post("/v2/repository/index", headers={"X-API-Key": API_KEY})
    assert response.json() == [
        {"name": MODEL, "version": "1", "state": "UNAVAILABLE", "reason": "not loaded"},
        {"name": MODEL, "version": "2", "state": "READY", "reason": ""},
    ]
    ready = client.post("/v2/repository/index", headers=AUTH, json={"ready": True})
    assert [row["version"] for row in ready.json()] == ["2"]


def test_load_pinned_version_then_latest(client: httpx.Client, repo: Path) -> None:
    response = client.post(LOAD, headers=AUTH, json={"parameters": {"version": 1}})
    assert response.json() == {"name": MODEL, "version": "1", "state": "READY"}
    answer = infer(client, 4).json()
    assert answer["model_version"] == "1"
    assert answer["outputs"][1]["data"] == reference(repo / MODEL / "1", pixels(1, 4))[
        "label"].tolist()
    write_model(repo, MODEL, 3)
    assert client.post(LOAD, headers=AUTH).json()["version"] == "3"
    assert infer(client).json()["model_version"] == "3"
    assert client.get(f"/v2/models/{MODEL}").json()["versions"] == ["3"]


def test_corrupt_version_is_refused_and_the_old_one_keeps_serving(
    client: httpx.Client, repo: Path
) -> None:
    folder = write_model(repo, MODEL, 3)
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"tampered")
    response = client.post(LOAD, headers=AUTH, json={"parameters": {"version": 3}})
    assert response.status_code == 409
    assert response.json()["error"].startswith(
        f"model 'mnist-mlp' version 3 ({folder}): sha256 of model.onnx is ")
    assert response.json()["error"].endswith(
        "; the file is corrupt or was replaced")
    assert infer(client).json()["model_version"] == "2"
    failures = f'mlp_model_load_failures_total{{model="{MODEL}"}} 1.0'
    assert failures in client.get("/metrics").text.splitlines()


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    (LOAD, {"parameters": {"version": 9}}, 404,
     "model 'mnist-mlp' version 9 is not loaded; no folder"),
    (LOAD, {"parameters": {"version": "x"}}, 400,
     "model version 'x' is invalid: expected a positive integer"),
    (LOAD, {"parameters": {"config": "{}"}}, 400,
     "parameter 'config' is not supported; supported: ['version']"),
    (LOAD, {"parameters": 5}, 400,
     "parameters: Input should be a valid dictionary (received 5)"),
    ("/v2/repository/models/..%2Fetc/load", {}, 404, "no route POST /v2/repository/models/../etc/"
     "load; see /docs"),
    ("/v2/repository/models/a..b/load", {}, 400,
     "model name 'a..b' is invalid: expected [a-z0-9][a-z0-9._-]{0,63} without '..'"),
    ("/v2/repository/models/Upper/load", {}, 400,
     "model name 'Upper' is invalid: expected [a-z0-9][a-z0-9._-]{0,63} without '..'"),
    ("/v2/repository/models/other/load", {}, 404, "model 'other' is not loaded; no versions in "
     "repository"),
    ("/v2/repository/models/other/unload", {}, 404,
     "model 'other' is not loaded; loaded models: mnist-mlp"),
])
def test_bad_control_requests(client: httpx.Client, path: str, body: object, status: int,
                              message: str) -> None:
    response = client.post(path, headers=AUTH, json=body)
    assert response.status_code == status
    assert response.json()["error"].startswith(message)
    assert infer(client).json()["model_version"] == "2"


def test_unload_then_load_again(client: httpx.Client) -> None:
    response = client.post(f"/v2/repository/models/{MODEL}/unload", headers=AUTH,
                           json={"parameters": {"unload_dependents": False}})
    assert response.json() == {"name": MODEL, "version": "2", "state": "UNAVAILABLE"}
    assert infer(client).status_code == 404
    assert client.get(f"/v2/models/{MODEL}/ready").status_code == 404
    assert client.post(LOAD, headers=AUTH).json()["version"] == "2"
    assert infer(client).status_code == 200


def test_swaps_under_load_drop_no_request(client: httpx.Client) -> None:
    """Requests keep flowing while versions swap back and forth; every one gets a 200."""
    def hammer(seed: int) -> list[tuple[int, str]]:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            results = []
            for i in range(30):
                response = infer(own, seed * 100 + i)
                results.append((response.status_code, response.json().get("model_version", "")))
            return results

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer, seed) for seed in range(3)]
        for version in (1, 2, 1, 2):
            assert client.post(LOAD, headers=AUTH,
                               json={"parameters": {"version": version}}).status_code == 200
        results = [item for future in futures for item in future.result()]
    assert {status for status, _ in results} == {200}
    assert {version for _, version in results} <= {"1", "2"}


def test_control_disabled_has_no_control_routes(repo: Path) -> None:
    app: FastAPI = create_app(settings_for(repo, control_enabled=False, api_key=""))
    with serve_in_thread(app) as client:
        response = client.post("/v2/repository/index", headers=AUTH)
        assert response.status_code == 404
        assert "/v2/repository/index" not in client.get("/openapi.json").json()["paths"]


def test_request_uploading_during_a_swap_is_answered_by_the_new_version(
    client: httpx.Client,
) -> None:
    """Arrives on v2, v2 is drained while its body uploads: v1 answers instead of a 503."""
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                                   "data": [9] * 784}]}).encode()
    port = client.base_url.port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                     f"\r\n".encode() + body[:500])
        time.sleep(0.2)
        assert client.post(LOAD, headers=AUTH,
                           json={"parameters": {"version": 1}}).status_code == 200
        sock.sendall(body[500:])
        sock.settimeout(10)
        response = b""
        while not response.endswith(b"}]}"):
            chunk = sock.recv(65536)
            assert chunk, response
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 ")
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["model_version"] == "1"
