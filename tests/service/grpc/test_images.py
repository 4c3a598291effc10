"""Images over gRPC: BYTES inputs of PNG/JPEG files, as tritonclient.grpc sends them
(length-prefixed in raw_input_contents) and as KServe's client does (contents.bytes_contents).
The model sees what the HTTP routes make of the same files, and a bad image gets HTTP's message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from service.http.app import create_app
from tests.service.conftest import MODEL, settings_for
from tests.service.http.test_images import (
    SEVEN,
    SMALL,
    assert_as_in_process,
    expected,
    with_normalization,
)
from tests.service.model_repo import write_model
from tests.service.servers import serve_both_in_thread


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist-mlp (mnist-centred images) and pixels-only (takes no images)."""
    root = tmp_path_factory.mktemp("grpc-images") / "models"
    with_normalization(write_model(root, MODEL, 1), "mnist-centred")
    with_normalization(write_model(root, "pixels-only", 1), "none")
    return root


@pytest.fixture(scope="module")
def target(repo: Path) -> Iterator[str]:
    with serve_both_in_thread(create_app(settings_for(repo))) as (_, grpc_target):
        yield grpc_target


@pytest.mark.parametrize("shape", [[2], [2, 1]], ids=["N", "Nx1"])
def test_tritonclient_grpc_sends_images(target: str, repo: Path, shape: list[int]) -> None:
    client = triton.InferenceServerClient(target)
    tensor = triton.InferInput("input", shape, "BYTES")
    tensor.set_data_from_numpy(np.array([SEVEN, SMALL], dtype=np.object_).reshape(shape))
    result = client.infer(MODEL, [tensor])
    client.close()
    assert_as_in_process(result, repo, [SEVEN, SMALL])


def infer(target: str, *elements: bytes, model: str = MODEL) -> pb.ModelInferResponse:
    """ModelInfer with the images in contents.bytes_contents, KServe's way."""
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="BYTES", shape=[len(elements)],
                       contents=pb.InferTensorContents(bytes_contents=list(elements)))
    with grpc.insecure_channel(target) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


def test_bytes_contents_carry_images_too(target: str, repo: Path) -> None:
    response = infer(target, SEVEN, SMALL)
    labels = np.frombuffer(response.raw_output_contents[1], "<i8")
    np.testing.assert_array_equal(labels, expected(repo, [SEVEN, SMALL])[1]["label"])


@pytest.mark.parametrize(("elements", "model", "message"), [
    ((SEVEN, b"hello"), MODEL, "input 'input' element 1: not a PNG or JPEG file"),
    ((SEVEN[:100],), MODEL, "input 'input' element 0: corrupt PNG data"),
    ((SEVEN,), "pixels-only", "model 'pixels-only' does not take images (its card says "
                              "image_normalization 'none'); send pixel rows"),
])
def test_a_bad_image_is_invalid_argument_with_the_http_message(
        target: str, elements: tuple[bytes, ...], model: str, message: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        infer(target, *elements, model=model)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(message)
