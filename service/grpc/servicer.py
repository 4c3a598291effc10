"""The RPCs of `inference.GRPCInferenceService`: parse the message, call the data plane, answer.

The gRPC twin of the HTTP routes (service/http/v2.py, control.py): the same DataPlane, batcher,
limits, checks and messages, so a gRPC request and an HTTP request can share one batch. Errors
are ServiceErrors, turned into status codes by service/grpc/server.py.
"""

from __future__ import annotations

from typing import Any

from service.errors import InvalidInput, ModelNotFound, Unauthorized
from service.grpc import grpc_service_pb2 as pb
from service.grpc.tensors import as_inference_request, decode_inputs, encode_response, parameters
from service.models.dataplane import DataPlane
from service.models.registry import ModelControl
from service.models.repository import check_name, parse_version

LOAD_PARAMETERS = {"version"}
UNLOAD_PARAMETERS = {"unload_dependents"}


class Call:
    """What an RPC reads besides its message: metadata (lower-case keys), the client's
    deadline, and the request log's note (arrival, request id, the model that answered)."""

    __slots__ = ("metadata", "note", "time_remaining")

    def __init__(self, metadata: dict[str, str], note: dict[str, Any],
                 time_remaining: float | None) -> None:
        self.metadata = metadata
        self.note = note
        self.time_remaining = time_remaining

    def answered_by(self, name: str, version: int | str | None) -> None:
        """Record which model and version answered, for the log line and metrics labels."""
        self.note["model"], self.note["version"] = name, str(version or "")


def version_of(text: str) -> int | None:
    """A request's model_version: empty means the served one."""
    return parse_version(text) if text else None


class InferenceServicer:
    """One method per RPC, each (message, Call) -> response message."""

    def __init__(self, dataplane: DataPlane, control: ModelControl | None) -> None:
        self.dataplane = dataplane
        self.control = control  # None: model control is off, those RPCs are not served

    async def ServerLive(self, request: pb.ServerLiveRequest, call: Call) -> pb.ServerLiveResponse:
        """Live while the process answers at all."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          call: Call) -> pb.ServerReadyResponse:
        """Ready once every model is loaded, until shutdown starts."""
        return pb.ServerReadyResponse(ready=self.dataplane.is_ready())

    async def ModelReady(self, request: pb.ModelReadyRequest,
                         call: Call) -> pb.ModelReadyResponse:
        """Whether this model (version) is served and the server takes requests; an unknown
        model is not ready (as Triton answers), a malformed version is INVALID_ARGUMENT."""
        version = version_of(request.version)
        try:
            model = self.dataplane.served_model(request.name, version)
        except ModelNotFound:
            return pb.ModelReadyResponse(ready=False)
        call.answered_by(model.name, model.version)
        return pb.ModelReadyResponse(ready=self.dataplane.is_ready())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             call: Call) -> pb.ServerMetadataResponse:
        """Server name, version and protocol extensions."""
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            call: Call) -> pb.ModelMetadataResponse:
        """The served version of a model with its inputs and outputs."""
        metadata = self.dataplane.model_metadata(request.name, version_of(request.version))
        call.answered_by(metadata["name"], metadata["versions"][0])
        metadata.pop("parameters")
        return pb.ModelMetadataResponse(**metadata)

    async def ModelInfer(self, request: pb.ModelInferRequest, call: Call) -> pb.ModelInferResponse:
        """Predict: the message is decoded, checked and queued exactly as an HTTP request."""
        dataplane = self.dataplane
        arrived = call.note["arrived"]
        version = version_of(request.model_version)
        with dataplane.admit(request.model_name, version) as admitted:
            call.answered_by(admitted.model.name, admitted.model.version)
            infer_request = as_inference_request(request)
            if call.time_remaining is not None:
                _shorten_timeout(infer_request.parameters, call.time_remaining)
            tensors = decode_inputs(request)
        model, outputs = await dataplane.infer_v2(request.model_name, version, infer_request,
                                                  tensors, arrived)
        call.answered_by(model.name, model.version)
        return encode_response(model.name, model.version, request.id, outputs)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest,
                              call: Call) -> pb.ModelStatisticsResponse:
        """Triton's statistics of one model (version), or of every served model."""
        stats = self.dataplane.model_statistics(request.name or None,
                                                version_of(request.version))
        return pb.ModelStatisticsResponse(model_stats=stats)

    def check_key(self, call: Call) -> None:
        """UNAUTHENTICATED unless the metadata carries the server's key, as HTTP headers do."""
        if not self.dataplane.settings.accepts_api_key(call.metadata.get("authorization", ""),
                                                       call.metadata.get("x-api-key", "")):
            raise Unauthorized()

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              call: Call) -> pb.RepositoryIndexResponse:
        """Every model version in the repository and whether it is served (READY)."""
        self.check_key(call)
        rows = self.dataplane.registry.index(ready_only=request.ready)
        return pb.RepositoryIndexResponse(models=rows)

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                                  call: Call) -> pb.RepositoryModelLoadResponse:
        """Verify a version (parameters "version", default latest) and swap it in."""
        self.check_key(call)
        assert self.control is not None
        options = _check_parameters(parameters(request.parameters), LOAD_PARAMETERS)
        version = options.get("version")
        model = await self.control.load(check_name(_model_name(request)),
                                        None if version is None else parse_version(version))
        call.answered_by(model.name, model.version)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    call: Call) -> pb.RepositoryModelUnloadResponse:
        """Stop serving a model after answering its queued requests."""
        self.check_key(call)
        assert self.control is not None
        _check_parameters(parameters(request.parameters), UNLOAD_PARAMETERS)
        model = await self.control.unload(_model_name(request))
        call.answered_by(model.name, model.version)
        return pb.RepositoryModelUnloadResponse()


def _model_name(request: pb.RepositoryModelLoadRequest | pb.RepositoryModelUnloadRequest) -> str:
    """The model to (un)load. KServe's V2 proto numbers `model_name` 1, where Triton's has
    `repository_name`: a request carrying only field 1 comes from a KServe client."""
    return request.model_name or request.repository_name


def _check_parameters(given: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise InvalidInput(f"parameter {unknown[0]!r} is not supported; supported: "
                           f"{sorted(allowed)}")
    return given


def _shorten_timeout(options: dict[str, Any] | None, remaining_s: float) -> None:
    """Fold the client's gRPC deadline into the `timeout` parameter (microseconds, as
    tritonclient sends it), which DataPlane.deadline honours: the earlier of the two wins."""
    assert options is not None
    remaining_us = max(1, int(remaining_s * 1e6))
    given = options.get("timeout")
    if not isinstance(given, int) or isinstance(given, bool) or not 0 < given < remaining_us:
        options["timeout"] = remaining_us
