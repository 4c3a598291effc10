"""tritonclient.http against a real `mlp-serve` process: JSON and binary modes, model control."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.service.conftest import MODEL, pixels, reference
from tests.service.servers import API_KEY, ServerProcess

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def triton_client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield client
    client.close()


def run(client: triton.InferenceServerClient, rows: np.ndarray, binary: bool,
        **kwargs: object) -> triton.InferResult:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary)
               for name in ("probabilities", "label")]
    return client.infer(MODEL, [tensor], outputs=outputs, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_matches_onnxruntime(triton_client: triton.InferenceServerClient,
                                   server: ServerProcess, binary: bool) -> None:
    rows = pixels(5, seed=11)
    result = run(triton_client, rows, binary, request_id="r-7")
    expected = reference(server.repo / MODEL / "2", rows)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"],
                               rtol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        MODEL, "2", "r-7")


def test_default_outputs_come_back_binary(triton_client: triton.InferenceServerClient,
                                          server: ServerProcess) -> None:
    rows = pixels(2, seed=12)
    tensor = triton.InferInput("input", [2, 784], "FP32").set_data_from_numpy(rows)
    result = triton_client.infer(MODEL, [tensor])  # sends parameters.binary_data_output
    assert "parameters" in result.get_output("label")
    np.testing.assert_array_equal(result.as_numpy("label"),
                                  reference(server.repo / MODEL / "2", rows)["label"])


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(triton_client: triton.InferenceServerClient,
                                           server: ServerProcess, algorithm: str) -> None:
    rows = pixels(3, seed=13)
    result = run(triton_client, rows, True, request_compression_algorithm=algorithm,
                 response_compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("label"),
                                  reference(server.repo / MODEL / "2", rows)["label"])


def test_health_metadata_and_errors(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL) and not triton_client.is_model_ready("nope")
    assert triton_client.get_server_metadata()["extensions"] == [
        "binary_tensor_data", "model_repository", "statistics"]
    config = triton_client.get_model_config(MODEL)
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [784]}]
    assert config["max_batch_size"] == 64
    metadata = triton_client.get_model_metadata(MODEL)
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]
    with pytest.raises(InferenceServerException) as error:
        run(triton_client, np.zeros((1, 783), np.float32), True)
    assert error.value.status() == "400"
    assert error.value.message() == ("input 'input': shape [1, 783] does not fit the model; "
                                     "expected [N, 784] (N rows of 784 raw pixel values)")


def test_model_control(triton_client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as error:
        triton_client.load_model(MODEL)
    assert error.value.status() == "401"
    index = triton_client.get_model_repository_index(headers=AUTH)
    assert [(m["version"], m["state"]) for m in index] == [("1", "UNAVAILABLE"), ("2", "READY")]
    triton_client.unload_model(MODEL, headers=AUTH)
    assert not triton_client.is_model_ready(MODEL)
    triton_client.load_model(MODEL, headers=AUTH)
    assert triton_client.is_model_ready(MODEL)
    assert run(triton_client, pixels(1), True).get_response()["model_version"] == "2"
