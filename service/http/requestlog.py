"""One log line and one set of metrics per request, and the X-Request-ID on every response.

`RequestLog` does the bookkeeping; `RequestLogMiddleware` (a pure ASGI middleware: no
BaseHTTPMiddleware, which would buffer every response) is the app's outermost layer, so every
request, fast path or FastAPI, is recorded there once. The note it keeps per request (in the
scope, where `Call` finds it) holds the arrival time, so deadlines count the time spent reading
and decoding. Endpoints name the model and version that answered (`Call.answered_by`); bodies
are never logged.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.call import SCOPE_KEY, new_note
from service.logs import log_request, request_logger
from service.metrics import Metrics
from service.models.dataplane import Lifecycle

MAX_ID_CHARS = 128
REQUEST_ID = b"x-request-id"
CLOSE = ((b"connection", b"close"),)


CLIENT_CLOSED = 499  # logged when the client went away before its answer (nginx's code)


class RequestIds:
    """Ids for requests that bring none: 32 hex digits like uuid4().hex, unique across
    processes (a random 64-bit prefix per process) and cheap (a counter, no syscall)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def take(self, raw: bytes | None) -> str:
        """The client's X-Request-ID when it is short printable ASCII, else a new id."""
        if raw and len(raw) <= MAX_ID_CHARS and raw.isascii() and raw.decode().isprintable():
            return raw.decode()
        return f"{self._prefix}{next(self._counter):016x}"


class RequestLog:
    """Start and finish the record of one HTTP request: in-flight count, metrics, log line."""

    def __init__(self, metrics: Metrics, lifecycle: Lifecycle) -> None:
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.ids = RequestIds()

    def closing(self) -> tuple[tuple[bytes, bytes], ...]:
        """`Connection: close` while draining: every answer then tells a keep-alive client
        (one with no load balancer in front) to reconnect, to another replica or to this one
        once it is back, instead of writing its next request into a socket about to close."""
        return CLOSE if self.lifecycle.draining else ()

    def start(self, scope: Scope) -> dict[str, Any]:
        """Note the arrival and the request id (the client's or a new one); count it in flight."""
        given = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID:
                given = value
                break
        self.lifecycle.in_flight += 1
        return new_note(self.ids.take(given))

    def finish(self, scope: Scope, note: dict[str, Any], endpoint: str, status: int) -> None:
        """Count the request by endpoint, model, version and status; one INFO line."""
        self.lifecycle.in_flight -= 1
        seconds = time.monotonic() - note["arrived"]
        model, version = note["model"], note["version"]
        self.metrics.observe_request(endpoint, model, version, status, seconds)
        if request_logger.isEnabledFor(logging.INFO):
            log_request(f"{scope['method']} {scope['path']} {status} {seconds * 1000:.1f}ms "
                        f"model={model or '-'} version={version or '-'} "
                        f"request_id={note['request_id']}")


class RequestLogMiddleware:
    """RequestLog around every HTTP request that does not take the hot path."""

    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        note = scope[SCOPE_KEY] = self.log.start(scope)
        status = 500
        started = False
        id_header = (REQUEST_ID, note["request_id"].encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", []), id_header,
                                      *self.log.closing()]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            if started:
                raise
            status = CLIENT_CLOSED  # gone before its answer: nothing to send
        finally:
            route = scope.get("route")
            self.log.finish(scope, note, getattr(route, "path", None) or "unmatched", status)
