"""One log line and one set of metrics per request, and the X-Request-ID on every response.

A pure ASGI middleware (no BaseHTTPMiddleware: it would buffer and slow every response). It
notes when each request arrived, so deadlines count the time spent reading and decoding.
Handlers name the model and version that answered with `note_model`; bodies are never logged.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.dataplane import Lifecycle
from service.metrics import Metrics

logger = logging.getLogger("mlp_serve.request")
SCOPE_KEY = "mlp_serve.log"
MAX_ID_CHARS = 128


def note_model(request: Request, name: str, version: int | str | None) -> None:
    """Record which model/version answered, for the log line and the metrics labels."""
    request.scope.setdefault(SCOPE_KEY, {}).update(model=name, version=str(version or ""))


def request_id_of(request: Request) -> str:
    """The id this request is logged under."""
    return str(request.scope.get(SCOPE_KEY, {}).get("request_id", ""))


def arrival_of(request: Request) -> float:
    """time.monotonic() when the app received this request: where its deadline starts."""
    arrived = request.scope.get(SCOPE_KEY, {}).get("arrived")
    return time.monotonic() if arrived is None else float(arrived)


def _clean_id(raw: bytes | None) -> str:
    """Take the client's X-Request-ID when it is short printable ASCII, else make one."""
    if raw and len(raw) <= MAX_ID_CHARS and raw.isascii() and raw.decode().isprintable():
        return raw.decode()
    return os.urandom(16).hex()  # 32 hex digits like uuid4().hex, at a third of the cost


class RequestLogMiddleware:
    """Request id, in-flight count, metrics and the one log line of each HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics, lifecycle: Lifecycle) -> None:
        self.app = app
        self.metrics = metrics
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, arrived = time.perf_counter(), time.monotonic()
        given = next((value for key, value in scope["headers"] if key == b"x-request-id"), None)
        request_id = _clean_id(given)
        note: dict[str, Any] = {"request_id": request_id, "model": "", "version": "",
                                "arrived": arrived}
        scope[SCOPE_KEY] = note
        status = 500
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        self.lifecycle.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.lifecycle.in_flight -= 1
            self.metrics.in_flight.dec()
            self._record(scope, note, status, time.perf_counter() - started)

    def _record(self, scope: Scope, note: dict[str, Any], status: int, seconds: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        model, version = note["model"], note["version"]
        self.metrics.observe_request(endpoint, model, version, status, seconds)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s %s %d %.1fms model=%s version=%s request_id=%s", scope["method"],
                scope["path"], status, seconds * 1000, model or "-", version or "-",
                note["request_id"],
            )
