"""The gRPC twin of tests/service/http/test_errors.py: every kind of bad input gets the right
status code (never INTERNAL) and the same message as over HTTP, naming field, value and rule.

Messages are built with tritonclient's own generated classes (its copy of the proto), as a
client would send them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from service.http.app import create_app
from service.models.batching import DynamicBatcher
from tests.service.conftest import MODEL, HeldModel, held_settings, settings_for
from tests.service.servers import serve_both_in_thread

ROW = [0.0] * 784
NOT_FIT = "does not fit the model; expected [N, 784] (N rows of 784 raw pixel values)"
DATATYPE = ("is not supported; send FP32 (UINT8..64, INT8..64, FP16 and FP64 are also accepted "
            "and converted to float32)")
BAD = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def channel(shared_repo: Path) -> Iterator[grpc.Channel]:
    with serve_both_in_thread(create_app(settings_for(shared_repo))) as (_, target), \
            grpc.insecure_channel(target) as opened:
        yield opened


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> service_pb2_grpc.GRPCInferenceServiceStub:
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def tensor(shape: list[int], datatype: str = "FP32", name: str = "input",
           **contents: list[Any]) -> pb.ModelInferRequest.InferInputTensor:
    message = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(message.contents, field).extend(values)
    return message


def request(*tensors: pb.ModelInferRequest.InferInputTensor, raw: list[bytes] | None = None,
            outputs: list[pb.ModelInferRequest.InferRequestedOutputTensor] | None = None,
            model: str = MODEL, version: str = "") -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name=model, model_version=version, inputs=tensors,
                                raw_input_contents=raw or [], outputs=outputs or [])


def raw(values: np.ndarray, shape: list[int] | None = None) -> pb.ModelInferRequest:
    return request(tensor(shape or list(values.shape)),
                   raw=[values.astype("<f4").tobytes()])


def with_value(value: float) -> np.ndarray:
    row = np.zeros((1, 784), np.float32)
    row[0, 3] = value
    return row


def output(name: str, **parameters: Any) -> pb.ModelInferRequest.InferRequestedOutputTensor:
    message = pb.ModelInferRequest.InferRequestedOutputTensor(name=name)
    for key, value in parameters.items():
        message.parameters[key].int64_param = value
    return message


def fails(stub: service_pb2_grpc.GRPCInferenceServiceStub, message: pb.ModelInferRequest,
          **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(message, timeout=30, **kwargs)
    return error.value.code(), error.value.details()


CASES = [  # (id, request, status, message): the HTTP case of the same id, over gRPC
    ("wrong length", request(tensor([1, 783], fp32_contents=ROW[:783])), BAD,
     f"input 'input': shape [1, 783] {NOT_FIT}"),
    # [N, 28, 28] images are accepted (tests/e2e/test_inputs.py); other 3-d shapes are not
    ("3-d shape", request(tensor([2, 14, 28], fp32_contents=ROW)), BAD,
     f"input 'input': shape [2, 14, 28] {NOT_FIT}"),
    ("count disagrees", request(tensor([2, 784], fp32_contents=ROW)), BAD,
     "input 'input': shape [2, 784] needs 1568 values but contents has 784"),
    ("negative dim", request(tensor([-1, 784], fp32_contents=ROW)), BAD,
     "input 'input': shape [-1, 784] has a negative size"),
    ("over 255", request(tensor([1, 784], "INT64", int64_contents=[300] + [0] * 783)), BAD,
     "input 'input': value 300 at row 0, column 0 is outside 0..255; expected raw pixel values "
     "in 0..255"),
    ("negative", request(tensor([1, 784], fp32_contents=[*ROW[:5], -1.5, *ROW[6:]])), BAD,
     "input 'input': value -1.5 at row 0, column 5 is outside 0..255; expected raw pixel "
     "values in 0..255"),
    ("huge fp64", request(tensor([1, 784], "FP64", fp64_contents=[1e+300, *ROW[1:]])), BAD,
     "input 'input': value 1e+300 at row 0, column 0 is outside 0..255; expected raw pixel "
     "values in 0..255"),
    ("NaN in contents", request(tensor([1, 784], fp32_contents=[float("nan"), *ROW[1:]])), BAD,
     "input 'input': value nan at row 0, column 0 is not a finite number; expected raw pixel "
     "values in 0..255"),
    ("BYTES of pixels", request(tensor([1, 784], "BYTES", bytes_contents=[b"0"] * 784)), BAD,
     "input 'input': BYTES shape [1, 784]; expected [N] or [N, 1] encoded images"),
    ("BYTES of numbers", request(tensor([1], "BYTES", bytes_contents=[b"12"])), BAD,
     "input 'input' element 0: not a PNG or JPEG file"),
    ("BOOL", request(tensor([1, 784], "BOOL", bool_contents=[False] * 784)), BAD,
     f"input 'input': datatype 'BOOL' {DATATYPE}"),
    ("unknown datatype", request(tensor([1, 784], "FLOAT", fp32_contents=ROW)), BAD,
     f"input 'input': datatype 'FLOAT' {DATATYPE}"),
    ("values in the wrong field", request(tensor([1, 784], int_contents=[0] * 784)), BAD,
     "input 'input': datatype FP32 takes its values in contents.fp32_contents, got "
     "contents.int_contents"),
    ("strings", request(tensor([1, 784], bytes_contents=[b"0"] * 784)), BAD,
     "input 'input': datatype FP32 takes its values in contents.fp32_contents, got "
     "contents.bytes_contents"),
    ("FP16 needs raw", request(tensor([1, 784], "FP16", fp32_contents=ROW)), BAD,
     "input 'input': datatype FP16 has no contents field; send it in raw_input_contents"),
    ("no data", request(tensor([1, 784])), BAD,
     "input 'input' has no data; send contents or raw_input_contents"),
    ("empty batch", request(tensor([0, 784]), raw=[b""]), BAD,
     "input 'input': the batch is empty (shape [0, 784]); send at least one row"),
    ("too many rows", request(tensor([65, 784], fp32_contents=ROW * 65)), BAD,
     "input 'input': 65 rows in one request, over the limit of 64 (MLP_MAX_ROWS_PER_REQUEST); "
     "split the batch"),
    ("unknown input", request(tensor([1, 784], name="pixels", fp32_contents=ROW)), BAD,
     "unknown input 'pixels'; model 'mnist-mlp' has inputs ['input']"),
    ("unknown output", request(tensor([1, 784], fp32_contents=ROW), outputs=[output("logits")]),
     BAD, "unknown output 'logits'; model 'mnist-mlp' has outputs ['probabilities', 'label']"),
    ("classification", request(tensor([1, 784], fp32_contents=ROW),
                               outputs=[output("label", classification=3)]), BAD,
     "output 'label': only the binary_data parameter is supported (no classification or shared "
     "memory)"),
    ("duplicate input", request(*[tensor([1, 784], fp32_contents=ROW)] * 2), BAD,
     "input 'input' appears twice; send each input once"),
    ("no inputs", request(), BAD, "inputs: the request has no inputs; send 'input' FP32 [N, 784]"),
    ("NaN", raw(with_value(np.nan)), BAD,
     "input 'input': value nan at row 0, column 3 is not a finite number; expected raw pixel "
     "values in 0..255"),
    ("infinity", raw(with_value(np.inf)), BAD,
     "input 'input': value inf at row 0, column 3 is not a finite number; expected raw pixel "
     "values in 0..255"),
    ("raw bytes short of the shape", raw(np.zeros((1, 783)), shape=[1, 784]), BAD,
     "input 'input': raw_input_contents[0] is 3132 bytes but shape [1, 784] of FP32 needs 3136"),
    ("raw entries do not match inputs", request(tensor([1, 784]), raw=[b"", b""]), BAD,
     "raw_input_contents has 2 entries for 1 inputs; send one per input, in the order of "
     "inputs"),
    ("unknown model", request(tensor([1, 784], fp32_contents=ROW), model="nope"),
     grpc.StatusCode.NOT_FOUND, "model 'nope' is not loaded; loaded models: mnist-mlp"),
    ("no model name", pb.ModelInferRequest(), grpc.StatusCode.NOT_FOUND,
     "model '' is not loaded; loaded models: mnist-mlp"),
    ("version not served", request(tensor([1, 784], fp32_contents=ROW), version="1"),
     grpc.StatusCode.NOT_FOUND, "model 'mnist-mlp' version 1 is not loaded; version 2 is served"),
    ("version not a number", request(tensor([1, 784], fp32_contents=ROW), version="abc"), BAD,
     "model version 'abc' is invalid: expected a positive integer"),
    ("version in non-ASCII digits", request(tensor([1, 784], fp32_contents=ROW), version="1¹"),
     BAD, "model version '1¹' is invalid: expected a positive integer"),
]


@pytest.mark.parametrize(("message", "status", "text"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_infer_request(stub: service_pb2_grpc.GRPCInferenceServiceStub,
                           message: pb.ModelInferRequest, status: grpc.StatusCode,
                           text: str) -> None:
    assert fails(stub, message) == (status, text)


def test_the_server_still_answers_after_bad_input(
        stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    response = stub.ModelInfer(request(tensor([1, 784], fp32_contents=ROW)), timeout=30)
    assert [o.name for o in response.outputs] == ["probabilities", "label"]
    assert np.frombuffer(response.raw_output_contents[1], "<i8").shape == (1,)


def test_metadata_errors(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    for call, status, text in [
        (lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="nope")),
         grpc.StatusCode.NOT_FOUND, "model 'nope' is not loaded; loaded models: mnist-mlp"),
        (lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL, version="²")), BAD,
         "model version '²' is invalid: expected a positive integer"),
        (lambda: stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="abc")), BAD,
         "model version 'abc' is invalid: expected a positive integer"),
        (lambda: stub.ModelStatistics(pb.ModelStatisticsRequest(name="nope")),
         grpc.StatusCode.NOT_FOUND, "model 'nope' is not loaded; loaded models: mnist-mlp"),
        (lambda: stub.ModelConfig(pb.ModelConfigRequest(name=MODEL)),
         grpc.StatusCode.UNIMPLEMENTED, "Method not found!"),
    ]:
        with pytest.raises(grpc.RpcError) as error:
            call()
        assert (error.value.code(), error.value.details()) == (status, text)
    assert not stub.ModelReady(pb.ModelReadyRequest(name="nope")).ready  # as Triton answers


def test_malformed_and_oversized_messages(channel: grpc.Channel,
                                          stub: service_pb2_grpc.GRPCInferenceServiceStub
                                          ) -> None:
    """Bytes that are no ModelInferRequest get INVALID_ARGUMENT; a message over
    MLP_MAX_BODY_BYTES gets RESOURCE_EXHAUSTED with HTTP's 413 message."""
    big = raw(np.zeros((640, 784)))  # 2,007,040 raw bytes, over the test limit of 2,000,000
    assert fails(stub, big) == (grpc.StatusCode.RESOURCE_EXHAUSTED, (
        f"request body is {big.ByteSize()} bytes, over the limit of 2000000 bytes "
        "(MLP_MAX_BODY_BYTES); send fewer rows per request or use the binary tensor format"))
    send_bytes = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                     request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as error:
        send_bytes(b"\x0a\xff\xff\xff", timeout=30)
    assert error.value.code() == BAD
    assert error.value.details().startswith(
        "the request is not a valid inference.ModelInferRequest message (")


def test_queue_full_is_unavailable_with_retry_after(repo: Path) -> None:
    app = create_app(settings_for(repo, max_queue_rows=1))
    with serve_both_in_thread(app) as (_, target), grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(request(tensor([2, 784], fp32_contents=ROW * 2)), timeout=30)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error.value.details() == ("server busy: 0 rows are queued and this request adds 2, "
                                     "over the limit of 1; retry after 1 s")
    assert ("retry-after", "1") in error.value.trailing_metadata()


def test_server_deadline_is_deadline_exceeded(repo: Path) -> None:
    app = create_app(settings_for(repo, request_timeout_ms=0.001))
    with serve_both_in_thread(app) as (_, target), grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        status, text = fails(stub, request(tensor([1, 784], fp32_contents=ROW)))
    assert status == grpc.StatusCode.DEADLINE_EXCEEDED
    assert re.fullmatch(r"request timed out after \d+ ms waiting for the model; retry later or "
                        r"send fewer rows", text)


def test_client_timeout_parameter_shortens_the_deadline(
        stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    message = request(tensor([1, 784], fp32_contents=ROW))
    message.parameters["timeout"].int64_param = 1  # microseconds, as tritonclient sends it
    status, text = fails(stub, message)
    assert status == grpc.StatusCode.DEADLINE_EXCEEDED
    assert text.startswith("request timed out after ")


def test_client_deadline_is_honoured(repo: Path, held: HeldModel,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A request queued behind a busy model with a 300 ms gRPC deadline: the client gets
    DEADLINE_EXCEEDED, the server queued it with that deadline (not its own 60 s), the model
    never runs its rows, and the server keeps serving."""
    budgets: list[float] = []  # seconds from submit() to the deadline the server queued with
    submit = DynamicBatcher.submit

    async def spy(self: DynamicBatcher, rows: np.ndarray, *, deadline: float) -> Any:
        budgets.append(deadline - time.monotonic())
        return await submit(self, rows, deadline=deadline)

    monkeypatch.setattr(DynamicBatcher, "submit", spy)
    app = create_app(held_settings(repo, request_timeout_ms=60_000))
    message = request(tensor([1, 784], fp32_contents=ROW))
    with serve_both_in_thread(app) as (_, target), grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        in_model = stub.ModelInfer.future(message, timeout=30)
        assert held.entered.wait(10)  # the first request holds the model
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(message, timeout=0.3)
        held.release.set()
        assert len(in_model.result(timeout=10).raw_output_contents) == 2
        after = stub.ModelInfer(message, timeout=30)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(after.raw_output_contents) == 2
    assert len(budgets) == 3 and budgets[0] > 20 and budgets[2] > 20
    assert 0 < budgets[1] < 0.35  # gRPC sends the deadline as a timeout rounded up
    assert held.calls == 2  # the request whose client gave up never reached the model


@pytest.mark.parametrize(("metadata", "status"), [
    ((), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", "Bearer not-the-key-0123456789"),), grpc.StatusCode.UNAUTHENTICATED),
    ((("x-api-key", "not-the-key-0123456789"),), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", "Basic dGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZg=="),),
     grpc.StatusCode.UNAUTHENTICATED),
])
def test_model_control_without_the_key(stub: service_pb2_grpc.GRPCInferenceServiceStub,
                                       metadata: tuple[tuple[str, str], ...],
                                       status: grpc.StatusCode) -> None:
    for call in (lambda: stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=metadata),
                 lambda: stub.RepositoryModelUnload(
                     pb.RepositoryModelUnloadRequest(model_name=MODEL), metadata=metadata),
                 lambda: stub.RepositoryModelLoad(
                     pb.RepositoryModelLoadRequest(model_name=MODEL), metadata=metadata)):
        with pytest.raises(grpc.RpcError) as error:
            call()
        assert (error.value.code(), error.value.details()) == (status, (
            "model control needs a valid API key: send 'Authorization: Bearer <key>' or "
            "'X-API-Key: <key>'"))


def test_control_off_means_no_control_rpcs(repo: Path) -> None:
    app = create_app(settings_for(repo, control_enabled=False, api_key=""))
    with serve_both_in_thread(app) as (_, target), grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.RepositoryIndex(pb.RepositoryIndexRequest())
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
