"""The gRPC listener of `mlp-serve`: `inference.GRPCInferenceService`, `grpc.health.v1.Health`
and server reflection on their own port (MLP_GRPC_PORT, 8001 as Triton), served by grpc.aio in
the event loop that runs uvicorn, so both protocols feed the same batchers.

Every RPC goes through one wrapper, the gRPC twin of the HTTP request log and error handler:
request id (metadata `x-request-id`, echoed in the trailers), in-flight count (so SIGTERM waits
for gRPC requests too), metrics with protocol="grpc", one log line, and ServiceErrors turned into
status codes with the same messages as HTTP -- never INTERNAL for bad input. Messages over
MLP_MAX_BODY_BYTES get RESOURCE_EXHAUSTED and malformed ones INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2

from service.errors import InvalidInput, PayloadTooLarge, ServiceError, StartupError
from service.grpc import grpc_service_pb2 as pb
from service.grpc.servicer import Call, InferenceServicer
from service.http.call import new_note
from service.http.requestlog import RequestIds
from service.logs import log_request, request_logger
from service.metrics import Metrics
from service.models.crowd import Crowd
from service.models.dataplane import DataPlane, Lifecycle
from service.models.registry import ModelControl
from service.settings import Settings

logger = logging.getLogger("mlp_serve")
SERVICE = "inference.GRPCInferenceService"
RPCS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
        "ModelInfer", "ModelStatistics")
CONTROL_RPCS = ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")
STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
          404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.FAILED_PRECONDITION,
          413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.INVALID_ARGUMENT,
          503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}
INTERNAL_MESSAGE = "internal server error; see the server log"
# gRPC's own limit sits above ours, so up to this many times MLP_MAX_BODY_BYTES a message gets
# our RESOURCE_EXHAUSTED message; beyond it gRPC refuses it unread (with its own message).
HARD_LIMIT_FACTOR = 4

# Reflection answers from the pool the service's messages live in (see generate.py): it needs
# the health and reflection services' files there too.
for _file in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
    pb.POOL.AddSerializedFile(_file.serialized_pb)

Behaviour = Callable[[Any, Call], Awaitable[Any]]


class _Refused:
    """A message refused while deserializing; its handler raises `error` instead of running."""

    __slots__ = ("error",)

    def __init__(self, error: ServiceError) -> None:
        self.error = error


class Health(HealthServicer):
    """grpc.health.v1.Health whose answer follows readiness: SERVING once the models are
    loaded, NOT_SERVING while starting or shutting down (Kubernetes gRPC probes)."""

    def __init__(self, dataplane: DataPlane) -> None:
        super().__init__()
        self.dataplane = dataplane

    async def refresh(self) -> None:
        """Set the server's and the inference service's status from readiness now."""
        status = (health_pb2.HealthCheckResponse.SERVING if self.dataplane.is_ready()
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for service in ("", SERVICE):
            if self._server_status.get(service) != status:
                await self.set(service, status)

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> Any:
        """The status now."""
        await self.refresh()
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """The status now, then each change (shutdown sets NOT_SERVING for every watcher)."""
        await self.refresh()
        await super().Watch(request, context)


class GrpcServer:
    """One grpc.aio server over the app's data plane; `start()` in the running loop."""

    def __init__(self, settings: Settings, dataplane: DataPlane, control: ModelControl | None,
                 metrics: Metrics, lifecycle: Lifecycle) -> None:
        self.settings = settings
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.ids = RequestIds()
        self.servicer = InferenceServicer(dataplane, control)
        self.health = Health(dataplane)
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @classmethod
    def for_app(cls, app: Any) -> GrpcServer:
        """A server over the objects `create_app` built (control only when it is enabled)."""
        state = app.state
        control = state.control if state.settings.control_enabled else None
        return cls(state.settings, state.dataplane, control, state.metrics, state.lifecycle)

    async def start(self, *, reuse_port: bool = False) -> int:
        """Listen on settings.host:settings.grpc_port (port 0: any free one); the bound port.

        `reuse_port`: with --workers N every worker binds the port and the kernel spreads
        connections over them; one process never shares it (a second server on the same port
        would otherwise start silently and take half the connections)."""
        limit = self.settings.max_body_bytes * HARD_LIMIT_FACTOR
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
        ])
        rpcs = RPCS + (CONTROL_RPCS if self.servicer.control is not None else ())
        handlers = {name: self._handler(name) for name in rpcs}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE,
                                                                               handlers),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server, pool=pb.POOL)
        host = self.settings.host
        address = f"[{host}]:{self.settings.grpc_port}" if ":" in host else \
            f"{host}:{self.settings.grpc_port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as error:
            raise StartupError(f"cannot listen for gRPC on {address}: {error}; stop what "
                               "listens there or choose another --grpc-port (MLP_GRPC_PORT)"
                               ) from None
        await server.start()
        self._server = server
        return self.port

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING to health watchers, refuse new RPCs, give running ones `grace_s`."""
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace_s)
        self._server = None

    def _handler(self, name: str) -> grpc.RpcMethodHandler:
        """The method handler of RPC `name`: deserialize under the size limit, then `_serve`."""
        method = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name[name]
        request_type = getattr(pb, method.input_type.name)
        behaviour: Behaviour = getattr(self.servicer, name)
        path = f"/{SERVICE}/{name}"
        limit = self.settings.max_body_bytes
        message_name = method.input_type.full_name

        def deserialize(data: bytes) -> Any:
            if len(data) > limit:
                return _Refused(PayloadTooLarge(limit, f"{len(data)} bytes"))
            try:
                return request_type.FromString(data)
            except DecodeError as error:
                return _Refused(InvalidInput(f"the request is not a valid {message_name} "
                                             f"message ({error})"))

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await self._serve(path, behaviour, request, context)

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=deserialize,
            response_serializer=lambda message: message.SerializeToString())

    async def _serve(self, path: str, behaviour: Behaviour, request: Any,
                     context: grpc.aio.ServicerContext) -> Any:
        """Run one RPC with its bookkeeping; errors become status codes with our messages."""
        metadata = {key: value for key, value in (context.invocation_metadata() or ())
                    if isinstance(value, str)}
        given = metadata.get("x-request-id")
        note = new_note(self.ids.take(given.encode() if given else None))
        self.lifecycle.in_flight += 1
        Crowd.waiting += 1
        code = grpc.StatusCode.CANCELLED  # unless it ends otherwise: the client went away
        trailers: tuple[tuple[str, str], ...] = (("x-request-id", note["request_id"]),)
        try:
            try:
                if isinstance(request, _Refused):
                    raise request.error
                response = await behaviour(request, Call(metadata, note,
                                                         context.time_remaining()))
            except ServiceError as error:
                code = STATUS.get(error.status_code, grpc.StatusCode.INTERNAL)
                retry = getattr(error, "retry_after_s", None)
                if retry is not None:
                    trailers += (("retry-after", str(retry)),)
                await context.abort(code, error.message, trailers)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception:
                logger.exception("unexpected error on gRPC %s", path)
                code = grpc.StatusCode.INTERNAL
                await context.abort(code, INTERNAL_MESSAGE, trailers)
            code = grpc.StatusCode.OK
            context.set_trailing_metadata(trailers)
            return response
        finally:
            self._finish(path, note, code)

    def _finish(self, path: str, note: dict[str, Any], code: grpc.StatusCode) -> None:
        """Count the RPC by method, model, version and status; one INFO line, as HTTP's."""
        self.lifecycle.in_flight -= 1
        Crowd.waiting -= 1
        seconds = time.monotonic() - note["arrived"]
        model, version, status = note["model"], note["version"], code.name
        self.metrics.observe_request(path, model, version, status, seconds, protocol="grpc")
        if request_logger.isEnabledFor(logging.INFO):
            log_request(f"GRPC {path} {status} {seconds * 1000:.1f}ms model={model or '-'} "
                        f"version={version or '-'} request_id={note['request_id']}")
