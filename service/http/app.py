"""`create_app(settings)`: the FastAPI app with its own models, batchers, metrics and state.

Models load in the lifespan (never at import or per request); readiness turns true only after
every selected model is verified and its batcher runs. Nothing here is global, so every test
builds a fresh app.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from service.errors import ServiceError, StartupError
from service.http import control, docs, ops, page, stats, v1, v2
from service.http.call import error_reply
from service.http.fastpath import HotPath, HotRoute, hot_routes
from service.http.requestlog import RequestLog, RequestLogMiddleware
from service.malloc import reuse_freed_memory
from service.metrics import Metrics
from service.models.dataplane import SERVER_VERSION, DataPlane, Lifecycle
from service.models.registry import LocalControl, ModelControl, ModelRegistry
from service.models.repository import ModelRepository
from service.protocol import (
    InferenceRequest,
    PredictRequest,
    RepositoryIndexRequest,
    RepositoryLoadRequest,
)
from service.settings import Settings

logger = logging.getLogger("mlp_serve")
DOCUMENTED_BODIES = (InferenceRequest, PredictRequest, RepositoryIndexRequest,
                     RepositoryLoadRequest)
# The routes HotPath serves (service/http/fastpath.py), each with its plain endpoint.
HOT_ROUTES = (
    *hot_routes(v2.router.routes, {v2.infer: v2.serve_infer, v2.infer_version: v2.serve_infer}),
    *hot_routes(v1.router.routes, {v1.predict: v1.serve_predict}),
)


class ServiceApp(FastAPI):
    """FastAPI with the inference routes on `HotPath` and the request log on every request."""

    hot_routes: tuple[HotRoute, ...] = HOT_ROUTES  # () sends everything through FastAPI

    def build_middleware_stack(self) -> ASGIApp:
        """RequestLogMiddleware(HotPath(FastAPI's own stack)): one request log for every
        request, whichever path serves it."""
        stack = super().build_middleware_stack()
        if self.hot_routes:
            stack = HotPath(stack, self, self.state.dataplane, self.hot_routes)
        logged = RequestLogMiddleware(stack, RequestLog(self.state.metrics, self.state.lifecycle))
        return with_cors(logged, self.state.settings)  # outermost: preflights never reach routes


class Role(Protocol):
    """What differs between running alone and as one worker of `mlp-serve --workers N`
    (`FleetWorker`, service/models/fleet.py): metrics, model control, start and stop."""

    def metrics(self) -> Metrics:
        """The app's metrics."""

    def control(self, registry: ModelRegistry) -> ModelControl:
        """What the control routes call to change the served models."""

    async def serving(self, registry: ModelRegistry, metrics: Metrics,
                      lifecycle: Lifecycle) -> None:
        """The models are loaded: set `lifecycle.ready` once the app may take requests (the
        ready line waits for the sockets, service/run/server.py)."""

    async def stopping(self) -> None:
        """Shutdown began (new requests get 503); before the models are unloaded."""


class SingleProcess:
    """The app is the whole service: its own metrics and models."""

    def metrics(self) -> Metrics:
        """A private registry (every test app starts from zero)."""
        return Metrics()

    def control(self, registry: ModelRegistry) -> ModelControl:
        """This process's models alone."""
        return LocalControl(registry)

    async def serving(self, registry: ModelRegistry, metrics: Metrics,
                      lifecycle: Lifecycle) -> None:
        """Ready at once: the models are this process's alone."""
        lifecycle.ready = True

    async def stopping(self) -> None:
        """Nothing to stop but the models."""


def create_app(settings: Settings, role: Role | None = None) -> FastAPI:
    """Build the app; its lifespan loads and verifies the models, then drains them on exit.

    `role`: `SingleProcess()` by default; each worker of `--workers N` passes a `FleetWorker`.
    """
    role = SingleProcess() if role is None else role
    metrics, lifecycle = role.metrics(), Lifecycle()
    metrics.track_in_flight(lambda: lifecycle.in_flight)
    repository = ModelRepository(settings.repository, ort_threads=settings.ort_threads)
    registry = ModelRegistry(repository, settings, metrics)
    dataplane = DataPlane(registry, settings, metrics, lifecycle)
    model_control = role.control(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await load_selected_models(repository, registry, settings)
        except BaseException as error:
            await registry.unload_all()
            if isinstance(error, StartupError):
                logger.error("cannot start: %s", error)
            raise
        settle_heap()
        reuse_freed_memory()
        await role.serving(registry, metrics, lifecycle)
        yield
        lifecycle.draining = True
        await role.stopping()  # before the models go: control commands being applied finish
        await registry.unload_all()
        metrics.flush()  # with --workers N, what this worker counted outlives it in its files

    # FastAPI's OpenTelemetry hooks are off: the service exports Prometheus metrics itself, and
    # the check for configured OTel providers cost ~10 us on every request.
    app = ServiceApp(title="mlp-serve", version=SERVER_VERSION, lifespan=lifespan,
                     docs_url=None, redoc_url=None, description=docs.DESCRIPTION,
                     telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings, app.state.metrics, app.state.lifecycle = settings, metrics, lifecycle
    app.state.registry, app.state.dataplane, app.state.control = registry, dataplane, model_control
    for router in (stats.router, v2.router, v1.router, ops.router, page.router):
        app.include_router(router)
    if settings.control_enabled:
        app.include_router(control.router)
    add_error_handlers(app)
    docs.add_docs(app)
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    return app


def with_cors(app: ASGIApp, settings: Settings) -> ASGIApp:
    """Outermost: answer CORS preflights and tag answers for the allowed origins (MLP_CORS_ORIGINS);
    the app itself when CORS is off (the default: browsers allow same-origin pages only)."""
    origins = settings.origins()
    if not origins:
        return app
    return CORSMiddleware(app, allow_origins=origins, allow_methods=["GET", "POST"],
                          allow_headers=["*"], max_age=600,
                          expose_headers=["x-model-version", "x-request-id",
                                          "inference-header-content-length"])


# Allocations (of objects the cyclic GC tracks) between two young-generation collections;
# Python's default is 700. See settle_heap.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Move everything start-up allocated (FastAPI, pydantic, numpy, the models) out of the
    garbage collector's reach, and collect the young generation less often.

    Why: each request allocates short-lived containers, so the cyclic GC runs often, and its
    full collections walked the ~10^5 start-up objects every time: at 64 clients that made the
    p99 latency 2.5x worse (bench/README.md). Frozen objects are never scanned; cycles created
    later are still collected. A young collection scans what is alive at that moment, mostly
    the in-flight requests' objects, whatever the threshold, so collecting every 20,000
    allocations instead of 700 scans them ~30x less often: the collector's share of a worker's
    CPU at 64 clients (1-row JSON, `perf record` on both workers) went from 1.5% to 0.1%.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def load_selected_models(repository: ModelRepository, registry: ModelRegistry,
                               settings: Settings) -> None:
    """Load MLP_MODELS (or every model, latest version); any failure stops start-up."""
    try:
        repository.check()
        selection = settings.model_selection() or dict.fromkeys(repository.model_names())
        if not selection:
            raise StartupError(f"model repository {str(repository.root)!r} holds no models; "
                               "train one first (mlp-train train) or point MLP_REPOSITORY at one")
        for name, version in selection.items():
            await registry.load(name, version)
    except ServiceError as error:
        raise StartupError(error.message) from None


def ready_message(settings: Settings, names: list[str], workers: str = "") -> str:
    """The start-up line with a curl that gets a prediction, ready to paste; `workers` says
    which processes serve (`mlp-serve --workers N`)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{settings.port}/v1/models/{names[0]}:predict"
    serving = f"{workers} serving" if workers else "serving"
    return (f"ready: {serving} {', '.join(names)} on http://{settings.host}:{settings.port} "
            f"and gRPC {settings.host}:{settings.grpc_port}; from the repository's folder, try: "
            f"curl -s {url} -d @samples/digit-7.v1.json")


def add_error_handlers(app: FastAPI) -> None:
    """One error shape, {"error": "..."}, for our errors, validation, 404 routes, 405 and the
    unexpected: every handler is `error_reply`, the renderer the fast path uses too."""

    async def render(request: Request, error: Exception) -> Response:
        return error_reply(error, request.method, request.url.path).response()

    for kind in (ServiceError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, render)


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request bodies the routes parse from raw bytes."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in DOCUMENTED_BODIES:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        app.openapi_schema = docs.annotate(schema)
    return app.openapi_schema
