"""gRPC of a real `mlp-serve` process tree: every worker of --workers 2 serves the gRPC port
and the statistics add up over them; SIGTERM drains gRPC as it drains HTTP."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.e2e.test_workers import Fleet
from tests.service.conftest import MODEL, pixels, reference
from tests.service.model_repo import write_model
from tests.service.servers import ServerProcess

REQUESTS = 40


def tensor(rows: np.ndarray, module: object = triton) -> triton.InferInput:
    inp = module.InferInput("input", list(rows.shape), "FP32")  # type: ignore[attr-defined]
    inp.set_data_from_numpy(rows)
    return inp  # type: ignore[no-any-return]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_model(tmp_path / "models", MODEL, 1)
    return tmp_path / "models"


@pytest.fixture
def fleet(repo: Path) -> Iterator[Fleet]:
    """`mlp-serve --workers 2` (control off), stopped at teardown."""
    started = Fleet(repo)
    try:
        started.wait_ready()
        yield started
    finally:
        started.close()


def test_every_worker_serves_grpc_and_statistics_add_up(fleet: Fleet, repo: Path) -> None:
    rows = pixels(REQUESTS, seed=51)
    expected = reference(repo / MODEL / "1", rows)
    answered_by: set[str] = set()
    for i in range(REQUESTS):  # a new client, so a new connection, per request
        client = triton.InferenceServerClient(fleet.server.grpc_target)
        result = client.infer(MODEL, [tensor(rows[i:i + 1])])
        client.close()
        np.testing.assert_array_equal(result.as_numpy("label"), expected["label"][i:i + 1])
        assert result.get_response().model_version == "1"
    for _ in range(REQUESTS):
        client = triton.InferenceServerClient(fleet.server.grpc_target)
        _, call = client._client_stub.ServerLive.with_call(  # trailers name the process
            triton.service_pb2.ServerLiveRequest(), timeout=30)
        answered_by.add(dict(call.trailing_metadata())["x-request-id"][:16])
        client.close()
    assert len(answered_by) == 2  # each worker's request ids start with its own prefix

    httpx.post(f"{fleet.server.url}/v2/models/{MODEL}/infer", timeout=30, content=(
        b'{"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": %s}]}'
        % str([0] * 784).encode()))
    success = 0
    for _ in range(50):  # other workers' numbers are at most 0.5 s old
        client = triton.InferenceServerClient(fleet.server.grpc_target)
        stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
        client.close()
        success = int(stats["inference_stats"]["success"]["count"])
        if success == REQUESTS + 1:
            break
        time.sleep(0.2)
    assert success == REQUESTS + 1  # 40 over gRPC + 1 over HTTP, whichever worker answered
    over_http = httpx.get(f"{fleet.server.url}/v2/models/{MODEL}/stats").json()
    assert over_http["model_stats"][0]["inference_count"] == REQUESTS + 1


@pytest.fixture
def draining(repo: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(repo, env={"MLP_SHUTDOWN_DELAY_S": "3"})
    try:
        process.wait_ready()
        yield process
    finally:
        if not process.log.closed:  # the test stops it itself
            process.stop()


def test_sigterm_drains_grpc(draining: ServerProcess) -> None:
    """Requests in flight at SIGTERM are answered; during the shutdown delay gRPC readiness and
    health say no and new inferences get UNAVAILABLE; then exit 0."""
    rows = pixels(8, seed=52)

    async def burst() -> list[str]:
        async with triton_aio.InferenceServerClient(draining.grpc_target) as client:
            assert await client.is_server_ready()

            async def one(i: int) -> str:
                try:
                    await client.infer(MODEL, [tensor(rows[i % 8:i % 8 + 1], triton_aio)])
                except InferenceServerException as error:
                    return f"{error.status()} {error.message()}"
                return "OK"

            calls = [asyncio.create_task(one(i)) for i in range(64)]
            await asyncio.sleep(0)
            draining.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*calls)

    outcomes = asyncio.run(burst())
    refused = ("StatusCode.UNAVAILABLE server is shutting down; send the request to another "
               "replica")
    assert set(outcomes) <= {"OK", refused}, set(outcomes)

    client = triton.InferenceServerClient(draining.grpc_target)
    for _ in range(50):
        if not client.is_server_ready():
            break
        time.sleep(0.05)
    assert not client.is_server_ready()
    with grpc.insecure_channel(draining.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [tensor(rows[:1])])
    assert f"{error.value.status()} {error.value.message()}" == refused
    client.close()
    code, log = draining.stop()
    assert code == 0, log
    assert "Traceback" not in log


def test_a_taken_grpc_port_stops_start_up_with_one_line(repo: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = ServerProcess(repo, env={"MLP_GRPC_PORT": str(port)})
        process.process.wait(timeout=60)
        code, log = process.stop()
    assert code == 1
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(
        f"cannot start: cannot listen for gRPC on 127.0.0.1:{port}: Address already in use; "
        "stop what listens there or choose another --grpc-port (MLP_GRPC_PORT)")
    assert "ready:" not in log  # refused before the models load
