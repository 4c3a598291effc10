"""tritonclient.grpc (sync and asyncio), unmodified, against a real `mlp-serve` process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from tests.service.conftest import MODEL, pixels, reference
from tests.service.servers import API_KEY, ServerProcess

AUTH = {"authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    grpc_client = triton.InferenceServerClient(server.grpc_target)
    yield grpc_client
    grpc_client.close()


def infer_input(rows: np.ndarray, module: object = triton) -> triton.InferInput:
    tensor = module.InferInput("input", list(rows.shape), "FP32")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(rows)  # raw_input_contents, as tritonclient always sends
    return tensor  # type: ignore[no-any-return]


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "2")
    assert not client.is_model_ready(MODEL, "1") and not client.is_model_ready("nope")
    server = client.get_server_metadata(as_json=True)
    assert server == {"name": "mlp-serve", "version": "0.1.0", "extensions": [
        "binary_tensor_data", "model_repository", "statistics"]}
    metadata = client.get_model_metadata(MODEL, as_json=True)
    assert metadata == {
        "name": MODEL, "versions": ["2"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": ["-1", "784"]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "10"]},
                    {"name": "label", "datatype": "INT64", "shape": ["-1"]}]}


def test_infer_matches_onnxruntime(client: triton.InferenceServerClient,
                                   server: ServerProcess) -> None:
    rows = pixels(5, seed=21)
    result = client.infer(MODEL, [infer_input(rows)], request_id="g-7")
    expected = reference(server.repo / MODEL / "2", rows)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"],
                               rtol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (MODEL, "2", "g-7")
    assert [o.name for o in response.outputs] == ["probabilities", "label"]


def test_requested_outputs_version_and_compression(client: triton.InferenceServerClient,
                                                   server: ServerProcess) -> None:
    rows = pixels(3, seed=22)
    result = client.infer(MODEL, [infer_input(rows)], model_version="2",
                          outputs=[triton.InferRequestedOutput("label")],
                          compression_algorithm="gzip")
    assert [o.name for o in result.get_response().outputs] == ["label"]
    assert result.as_numpy("probabilities") is None
    np.testing.assert_array_equal(result.as_numpy("label"),
                                  reference(server.repo / MODEL / "2", rows)["label"])
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [infer_input(rows)], model_version="1")
    assert error.value.status() == "StatusCode.NOT_FOUND"
    assert error.value.message() == "model 'mnist-mlp' version 1 is not loaded; version 2 is served"


def test_async_client_many_concurrent_requests(server: ServerProcess) -> None:
    rows = pixels(24, seed=23)
    expected = reference(server.repo / MODEL / "2", rows)

    async def run() -> list[np.ndarray]:
        async with triton_aio.InferenceServerClient(server.grpc_target) as aio_client:
            assert await aio_client.is_server_ready()
            results = await asyncio.gather(*(
                aio_client.infer(MODEL, [infer_input(rows[i:i + 1], triton_aio)],
                                 request_id=str(i)) for i in range(len(rows))))
            assert [r.get_response().id for r in results] == [str(i) for i in range(24)]
            return [r.as_numpy("probabilities")[0] for r in results]

    np.testing.assert_allclose(np.stack(asyncio.run(run())), expected["probabilities"],
                               rtol=1e-6)


def test_model_control_needs_the_key(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.get_model_repository_index()
    assert error.value.status() == "StatusCode.UNAUTHENTICATED"
    assert error.value.message() == ("model control needs a valid API key: send "
                                     "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    with pytest.raises(InferenceServerException):
        client.unload_model(MODEL, headers={"authorization": "Bearer wrong-key-0123456789"})
    index = client.get_model_repository_index(headers={"x-api-key": API_KEY}, as_json=True)
    assert index["models"] == [
        {"name": MODEL, "version": "1", "state": "UNAVAILABLE", "reason": "not loaded"},
        {"name": MODEL, "version": "2", "state": "READY"}]


def test_load_unload_swap_versions(server: ServerProcess,
                                   client: triton.InferenceServerClient) -> None:
    rows = pixels(2, seed=24)
    try:
        client.load_model(MODEL, headers=AUTH, config=None)
        with pytest.raises(InferenceServerException) as error:
            client.load_model(MODEL, headers=AUTH, files={"file:1/model.onnx": b"x"})
        assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
        client.unload_model(MODEL, headers=AUTH)
        assert not client.is_model_ready(MODEL)
        with pytest.raises(InferenceServerException) as error:
            client.infer(MODEL, [infer_input(rows)])
        assert error.value.status() == "StatusCode.NOT_FOUND"
    finally:
        client.load_model(MODEL, headers=AUTH)
    assert client.is_model_ready(MODEL, "2")
    np.testing.assert_array_equal(client.infer(MODEL, [infer_input(rows)]).as_numpy("label"),
                                  reference(server.repo / MODEL / "2", rows)["label"])


def test_statistics_over_grpc_and_http(client: triton.InferenceServerClient,
                                       server: ServerProcess) -> None:
    """tritonclient's get_inference_statistics over both protocols: the same numbers."""
    before = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    for rows in (1, 4, 4):
        client.infer(MODEL, [infer_input(pixels(rows, seed=rows))])
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, [infer_input(np.full((1, 784), 300, np.float32))])
    stats = client.get_inference_statistics(MODEL, "2", as_json=True)["model_stats"]
    over_http = httpx.get(f"{server.url}/v2/models/{MODEL}/versions/2/stats").json()
    assert len(stats) == 1 and stats[0]["name"] == MODEL and stats[0]["version"] == "2"
    after = stats[0]

    def count(entry: dict[str, object], *path: str) -> int:
        value: object = entry
        for key in path:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        return int(value) if isinstance(value, (str, int)) else 0

    stages = ("success", "queue", "compute_input", "compute_infer", "compute_output")
    for stage in stages:
        assert count(after, "inference_stats", stage, "count") - count(
            before, "inference_stats", stage, "count") == 3  # bad input is not an inference
        assert count(after, "inference_stats", stage, "ns") > count(
            before, "inference_stats", stage, "ns")
    assert count(after, "inference_count") - count(before, "inference_count") == 9
    http_stats = over_http["model_stats"][0]
    assert http_stats["inference_stats"]["success"]["count"] == count(
        after, "inference_stats", "success", "count")
    assert http_stats["inference_count"] == count(after, "inference_count")
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in http_stats["batch_stats"]}
    assert sizes[4] >= 2 and sum(sizes.values()) == http_stats["execution_count"]
    with pytest.raises(InferenceServerException) as error:
        client.get_inference_statistics("nope")
    assert error.value.status() == "StatusCode.NOT_FOUND"
