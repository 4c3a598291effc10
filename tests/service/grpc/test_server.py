"""The gRPC listener beside HTTP in one process: one batcher for both, health, reflection,
metrics and the request log."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families

from service.http.app import create_app
from tests.service.conftest import MODEL, pixels, reference, settings_for
from tests.service.servers import serve_both_in_thread

HTTP_ROWS, GRPC_ROWS = 3, 5  # a batch of a size neither divides holds both protocols


@pytest.fixture(scope="module")
def both(shared_repo: Path) -> Iterator[tuple[httpx.Client, str]]:
    with serve_both_in_thread(create_app(settings_for(shared_repo))) as served:
        yield served


def http_infer(http: httpx.Client, rows: np.ndarray) -> np.ndarray:
    header = (b'{"inputs": [{"name": "input", "shape": [%d, 784], "datatype": "FP32", '
              b'"parameters": {"binary_data_size": %d}}]}' % (len(rows), rows.nbytes))
    response = http.post(f"/v2/models/{MODEL}/infer", content=header + rows.tobytes(),
                         headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    return np.array(next(o["data"] for o in response.json()["outputs"] if o["name"] == "label"))


def test_http_and_grpc_requests_share_batches(both: tuple[httpx.Client, str],
                                              shared_repo: Path) -> None:
    """Concurrent 3-row HTTP and 5-row gRPC requests: some model call runs a batch whose size
    neither 3 nor 5 divides, so it held requests of both protocols (the batcher's statistics
    say so); every answer is the in-process onnxruntime answer."""
    http, target = both
    client = triton.InferenceServerClient(target)
    http_rows, grpc_rows = pixels(HTTP_ROWS, seed=31), pixels(GRPC_ROWS, seed=32)
    expected = {rows.shape[0]: reference(shared_repo / MODEL / "2", rows)["label"]
                for rows in (http_rows, grpc_rows)}
    tensor = triton.InferInput("input", [GRPC_ROWS, 784], "FP32")
    tensor.set_data_from_numpy(grpc_rows)

    def over_http() -> None:
        for _ in range(8):
            np.testing.assert_array_equal(http_infer(http, http_rows), expected[HTTP_ROWS])

    def over_grpc() -> None:
        for _ in range(8):
            labels = client.infer(MODEL, [tensor]).as_numpy("label")
            np.testing.assert_array_equal(labels, expected[GRPC_ROWS])

    def mixed_sizes() -> set[int]:
        stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
        sizes = {int(b["batch_size"]) for b in stats.get("batch_stats", [])}
        return {s for s in sizes if s % HTTP_ROWS and s % GRPC_ROWS}

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for _ in range(10):  # rounds until one mixed batch was seen; usually the first
            jobs = [pool.submit(over_http) for _ in range(8)]
            jobs += [pool.submit(over_grpc) for _ in range(8)]
            for job in jobs:
                job.result(timeout=120)
            mixed = mixed_sizes()
            if mixed:
                break
    client.close()
    assert mixed, "no batch held both an HTTP and a gRPC request"


def test_health_follows_readiness(both: tuple[httpx.Client, str]) -> None:
    with grpc.insecure_channel(both[1]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as error:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(both: tuple[httpx.Client, str]) -> None:
    with grpc.insecure_channel(both[1]) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert set(database.get_services()) == {
            "inference.GRPCInferenceService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"}
        found = database.FindFileContainingSymbol("inference.GRPCInferenceService")
        service = next(s for s in found.service if s.name == "GRPCInferenceService")
        assert {m.name for m in service.method} == {
            "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
            "ModelInfer", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
            "RepositoryModelUnload"}
        health = database.FindFileContainingSymbol("grpc.health.v1.Health")
        assert health.package == "grpc.health.v1"


def test_metrics_and_log_line_count_grpc_requests(both: tuple[httpx.Client, str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    http, target = both
    client = triton.InferenceServerClient(target)
    tensor = triton.InferInput("input", [1, 784], "FP32")
    tensor.set_data_from_numpy(pixels(1, seed=33))

    def count(status: str) -> float:
        families = text_string_to_metric_families(http.get("/metrics").text)
        return sum(s.value for f in families for s in f.samples
                   if s.name == "mlp_requests_total" and s.labels == {
                       "protocol": "grpc", "model": MODEL, "version": "2", "status": status,
                       "endpoint": "/inference.GRPCInferenceService/ModelInfer"})

    before = count("OK"), count("INVALID_ARGUMENT")
    with caplog.at_level(logging.INFO, logger="mlp_serve.request"):
        client.infer(MODEL, [tensor], headers={"x-request-id": "grpc-trace-9"})
        with pytest.raises(Exception, match=r"outside 0\.\.255"):
            client.infer(MODEL, [triton.InferInput("input", [1, 784], "FP32")
                                 .set_data_from_numpy(np.full((1, 784), 256, np.float32))])
    client.close()
    assert (count("OK") - before[0], count("INVALID_ARGUMENT") - before[1]) == (1, 1)
    lines = [r.getMessage() for r in caplog.records if "grpc-trace-9" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("GRPC /inference.GRPCInferenceService/ModelInfer OK ")
    assert lines[0].endswith(" model=mnist-mlp version=2 request_id=grpc-trace-9")
