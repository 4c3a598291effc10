"""KServe's V2 gRPC client path against a real `mlp-serve` process.

PyPI's `kserve` (whose InferenceGRPCClient is a thin asyncio wrapper over the stubs generated
from its grpc_predict_v2.proto) is not installed: it pulls 23 packages (pandas, kubernetes,
cryptography, ...) and pins psutil<6 and pandas<3, which would downgrade this environment. The
test generates those same stubs from KServe's own proto (kserve_predict_v2.proto, copied
unchanged from github.com/kserve/kserve python/kserve/kserve/protocol/grpc/) with grpcio-tools
and calls them as InferenceGRPCClient does: grpc.aio channel, the stub's RPCs with metadata
and a timeout, tensors as `contents` or `raw_input_contents`.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import numpy as np
import pytest

from service.grpc.generate import use_private_pool
from tests.service.conftest import MODEL, pixels, reference
from tests.service.servers import API_KEY, ServerProcess

PROTO = Path(__file__).with_name("kserve_predict_v2.proto")


@pytest.fixture(scope="module")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType]:
    """KServe's generated messages and stubs (messages in a private descriptor pool, as ours:
    tritonclient's copy of the same `inference.*` names lives in the default one)."""
    folder = tmp_path_factory.mktemp("kserve")
    shutil.copy(PROTO, folder / PROTO.name)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{folder}",
                    f"--python_out={folder}", f"--grpc_python_out={folder}", PROTO.name],
                   check=True, cwd=folder)
    use_private_pool(folder / "kserve_predict_v2_pb2.py")
    sys.path.insert(0, str(folder))
    try:
        messages = importlib.import_module("kserve_predict_v2_pb2")
        stubs = importlib.import_module("kserve_predict_v2_pb2_grpc")
    finally:
        sys.path.remove(str(folder))
    return messages, stubs


def run(server: ServerProcess, kserve: tuple[ModuleType, ModuleType],
        talk: Any) -> Any:
    """Open a grpc.aio channel as InferenceGRPCClient does and run `talk(pb, stub)`."""
    pb, stubs = kserve

    async def session() -> Any:
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            return await talk(pb, stubs.GRPCInferenceServiceStub(channel))

    return asyncio.run(session())


def outputs(response: Any) -> dict[str, np.ndarray]:
    """Decode the answer as KServe's InferResponse.from_grpc does for raw outputs."""
    dtypes = {"FP32": "<f4", "INT64": "<i8"}
    return {o.name: np.frombuffer(raw, dtypes[o.datatype]).reshape(list(o.shape))
            for o, raw in zip(response.outputs, response.raw_output_contents, strict=True)}


def test_health_and_metadata(server: ServerProcess,
                             kserve: tuple[ModuleType, ModuleType]) -> None:
    async def talk(pb: Any, stub: Any) -> list[Any]:
        return [await stub.ServerLive(pb.ServerLiveRequest(), timeout=60),
                await stub.ServerReady(pb.ServerReadyRequest(), timeout=60),
                await stub.ModelReady(pb.ModelReadyRequest(name=MODEL), timeout=60),
                await stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=60),
                await stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=60)]

    live, ready, model_ready, server_metadata, metadata = run(server, kserve, talk)
    assert live.live and ready.ready and model_ready.ready
    assert server_metadata.name == "mlp-serve"
    assert (metadata.name, list(metadata.versions), metadata.platform) == (
        MODEL, ["2"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("input", "FP32", [-1, 784])]


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
def test_infer_matches_onnxruntime(server: ServerProcess, kserve: tuple[ModuleType, ModuleType],
                                   raw: bool) -> None:
    rows = pixels(4, seed=41)

    async def talk(pb: Any, stub: Any) -> Any:
        request = pb.ModelInferRequest(model_name=MODEL, id="k-1")
        tensor = request.inputs.add(name="input", datatype="FP32", shape=[4, 784])
        if raw:
            request.raw_input_contents.append(rows.tobytes())
        else:
            tensor.contents.fp32_contents.extend(rows.reshape(-1).tolist())
        return await stub.ModelInfer(request=request, metadata=(), timeout=60)

    response = run(server, kserve, talk)
    assert (response.model_name, response.model_version, response.id) == (MODEL, "2", "k-1")
    answer, expected = outputs(response), reference(server.repo / MODEL / "2", rows)
    np.testing.assert_allclose(answer["probabilities"], expected["probabilities"], rtol=1e-6)
    np.testing.assert_array_equal(answer["label"], expected["label"])


def test_errors_and_model_control(server: ServerProcess,
                                  kserve: tuple[ModuleType, ModuleType]) -> None:
    """KServe's load/unload messages number model_name 1 (Triton's repository_name): the
    server reads them as the model to (un)load; the key goes in the metadata."""
    auth = (("authorization", f"Bearer {API_KEY}"),)

    async def talk(pb: Any, stub: Any) -> list[Any]:
        found: list[Any] = []
        for call in (
            stub.ModelInfer(pb.ModelInferRequest(model_name="nope"), timeout=60),
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=MODEL),
                                       timeout=60),
        ):
            try:
                await call
            except grpc.aio.AioRpcError as error:
                found.append((error.code(), error.details()))
        await stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=MODEL),
                                         metadata=auth, timeout=60)
        found.append((await stub.ModelReady(pb.ModelReadyRequest(name=MODEL))).ready)
        await stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=MODEL),
                                       metadata=auth, timeout=60)
        found.append((await stub.ModelReady(pb.ModelReadyRequest(name=MODEL))).ready)
        return found

    assert run(server, kserve, talk) == [
        (grpc.StatusCode.NOT_FOUND, "model 'nope' is not loaded; loaded models: mnist-mlp"),
        (grpc.StatusCode.UNAUTHENTICATED, "model control needs a valid API key: send "
         "'Authorization: Bearer <key>' or 'X-API-Key: <key>'"),
        False, True]
