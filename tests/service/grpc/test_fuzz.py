"""Hypothesis fuzzing of ModelInfer over real gRPC: whatever message (or byte string) arrives,
the answer is OK or a client-error status with a message, never INTERNAL or UNKNOWN, and every
valid request gets onnxruntime's answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from service.http.app import create_app
from tests.service.conftest import MODEL, reference, settings_for
from tests.service.servers import serve_both_in_thread

CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.RESOURCE_EXHAUSTED}
DATATYPES = ["FP32", "FP64", "FP16", "INT64", "INT32", "INT8", "UINT8", "UINT32", "UINT64",
             "BOOL", "BYTES", "BF16", "fp32", ""]
FIELDS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents",
          "INT32": "int_contents", "UINT8": "uint_contents", "UINT64": "uint64_contents"}
DTYPES = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4",
          "INT8": "<i1", "UINT8": "<u1", "UINT32": "<u4", "UINT64": "<u8"}
SETTINGS = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def served(shared_repo: Path) -> Iterator[tuple[grpc.Channel, Any]]:
    with serve_both_in_thread(create_app(settings_for(shared_repo))) as (_, target), \
            grpc.insecure_channel(target) as channel:
        yield channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[pb.ModelInferRequest, np.ndarray]:
    """A request the server must answer: 1..8 rows of pixels in one accepted datatype, sent as
    contents or raw bytes, with any requested outputs."""
    rows = draw(st.integers(1, 8))
    datatype = draw(st.sampled_from(sorted(FIELDS)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    array = rng.uniform(0, 255, (rows, 784))
    array[rng.random((rows, 784)) < 0.2] = draw(st.sampled_from([0.0, 255.0, 254.99998]))
    if datatype[0] in "IU":
        array = np.rint(array)
    array = array.astype(DTYPES[datatype])
    message = pb.ModelInferRequest(model_name=MODEL, id=draw(st.text(max_size=8)),
                                   model_version=draw(st.sampled_from(["", "2"])))
    tensor = message.inputs.add(name="input", datatype=datatype, shape=[rows, 784])
    if draw(st.booleans()):
        message.raw_input_contents.append(array.tobytes())
    else:
        getattr(tensor.contents, FIELDS[datatype]).extend(array.reshape(-1).tolist())
    for name in draw(st.lists(st.sampled_from(["probabilities", "label"]), unique=True)):
        message.outputs.add(name=name)
    return message, array.astype(np.float32)


@st.composite
def any_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """Anything a client could build: odd names, datatypes, shapes, contents in any field, raw
    bytes of any length, parameters and outputs."""
    message = pb.ModelInferRequest(
        model_name=draw(st.sampled_from([MODEL, MODEL, "", "nope", "../x"])),
        model_version=draw(st.sampled_from(["", "2", "1", "0", "-1", "x", "²"])))
    for _ in range(draw(st.integers(0, 2))):
        tensor = message.inputs.add(
            name=draw(st.sampled_from(["input", "input", "pixels", ""])),
            datatype=draw(st.sampled_from(DATATYPES)),
            shape=draw(st.lists(st.integers(-2, 900), max_size=3)))
        field = draw(st.sampled_from([*FIELDS.values(), "bool_contents", "bytes_contents",
                                      "raw", "none"]))
        size = draw(st.integers(0, 1600))
        if field == "raw":
            message.raw_input_contents.append(draw(st.binary(min_size=size, max_size=size))
                                              if size < 64 else bytes(size))
        elif field == "bool_contents":
            tensor.contents.bool_contents.extend([True] * size)
        elif field == "bytes_contents":
            tensor.contents.bytes_contents.extend([b"1"] * size)
        elif field != "none":
            value = draw(st.sampled_from([0, 7, 255, 256, -1]) if "int" in field
                         else st.floats(allow_nan=True, allow_infinity=True))
            if field.startswith("uint") and value < 0:
                value = 2**32 - 1
            getattr(tensor.contents, field).extend([value] * size)
    for name in draw(st.lists(st.sampled_from(["label", "probabilities", "logits"]),
                              max_size=2)):
        output = message.outputs.add(name=name)
        if draw(st.booleans()):
            output.parameters["classification"].int64_param = 2
    if draw(st.booleans()):
        message.parameters["timeout"].int64_param = draw(st.integers(-5, 10**7))
    return message


def status_of(call: Any, message: Any) -> tuple[grpc.StatusCode, Any]:
    try:
        return grpc.StatusCode.OK, call(message, timeout=30)
    except grpc.RpcError as error:
        assert error.code() in CLIENT_ERRORS | {grpc.StatusCode.DEADLINE_EXCEEDED}, (
            error.code(), error.details())
        assert error.details(), "an error status without a message"
        return error.code(), None


def test_valid_requests_get_onnxruntime_answers(served: tuple[grpc.Channel, Any],
                                                shared_repo: Path) -> None:
    stub = served[1]

    @SETTINGS
    @given(valid_requests())
    def check(case: tuple[pb.ModelInferRequest, np.ndarray]) -> None:
        message, rows = case
        response = stub.ModelInfer(message, timeout=30)
        expected = reference(shared_repo / MODEL / "2", rows)
        names = [o.name for o in message.outputs] or ["probabilities", "label"]
        assert [o.name for o in response.outputs] == names
        assert response.id == message.id
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
            dtype = "<f4" if output.datatype == "FP32" else "<i8"
            array = np.frombuffer(raw, dtype).reshape(list(output.shape))
            np.testing.assert_allclose(array, expected[output.name], rtol=1e-6)

    check()


def test_any_message_gets_ok_or_a_client_error(served: tuple[grpc.Channel, Any]) -> None:
    stub = served[1]
    seen: set[grpc.StatusCode] = set()

    @SETTINGS
    @given(any_requests())
    def check(message: pb.ModelInferRequest) -> None:
        seen.add(status_of(stub.ModelInfer, message)[0])

    check()
    assert grpc.StatusCode.INVALID_ARGUMENT in seen and grpc.StatusCode.NOT_FOUND in seen


def test_any_bytes_get_ok_or_a_client_error(served: tuple[grpc.Channel, Any]) -> None:
    send_bytes = served[0].unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                       request_serializer=None, response_deserializer=None)

    @SETTINGS
    @given(st.binary(max_size=200))
    def check(data: bytes) -> None:
        status_of(send_bytes, data)

    check()
