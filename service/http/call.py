"""One HTTP request and its answer as plain data, so an endpoint runs with or without FastAPI.

Why: the inference endpoints are the service's hot path. Written against `Call` and `Reply`
instead of Starlette's Request/Response, the same function serves FastAPI's route (documented in
/openapi.json, used when the hot path is off) and `HotPath`, which calls it straight from the ASGI
scope and skips every per-request object it does not need. `error_reply` renders every error
for both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from service.codec import JSON_TYPE
from service.errors import ServiceError, describe_validation_errors

logger = logging.getLogger("mlp_serve")
SCOPE_KEY = "mlp_serve.log"  # the request log's note in the ASGI scope


def new_note(request_id: str, arrived: float | None = None) -> dict[str, Any]:
    """What the request log records of one request; endpoints fill in model and version."""
    return {"request_id": request_id, "model": "", "version": "",
            "arrived": time.monotonic() if arrived is None else arrived}


@dataclass(slots=True)
class Call:
    """What an endpoint reads from a request: headers (lower-case names), the body's ASGI
    `receive`, and the log note (request id, arrival time, the model that answered)."""

    headers: Mapping[str, str]
    receive: Receive
    note: dict[str, Any]

    @classmethod
    def from_request(cls, request: Request) -> Call:
        """From FastAPI's Request (the request log middleware left its note in the scope)."""
        note = request.scope.get(SCOPE_KEY)
        if note is None:
            note = request.scope[SCOPE_KEY] = new_note("")
        return cls(request.headers, request.receive, note)

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive, note: dict[str, Any]) -> Call:
        """Straight from ASGI: one dict of the headers, the first of repeated ones kept (as
        Starlette's Headers.get does)."""
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in reversed(scope["headers"])}
        return cls(headers, receive, note)

    @property
    def arrived(self) -> float:
        """time.monotonic() when the request arrived: where its deadline starts."""
        return float(self.note["arrived"])

    def answered_by(self, name: str, version: int | str | None) -> None:
        """Record which model and version answered, for the log line and metrics labels."""
        self.note["model"], self.note["version"] = name, str(version or "")


@dataclass(slots=True)
class Reply:
    """A complete answer: body bytes, headers (content-type included) and status."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200

    @classmethod
    def json(cls, content: Any, status: int = 200,
             headers: Mapping[str, str] | None = None) -> Reply:
        """A JSON answer encoded with orjson (numpy arrays included)."""
        return cls(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
                   {"content-type": JSON_TYPE, **(headers or {})}, status)

    def response(self) -> Response:
        """As a Starlette Response, for FastAPI routes and exception handlers."""
        return Response(self.body, self.status, headers=self.headers)

    def raw_headers(self, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        """ASGI header list: ours lower-cased, content-length, then `extra`."""
        return [*((name.lower().encode("latin-1"), value.encode("latin-1"))
                  for name, value in self.headers.items()),
                (b"content-length", str(len(self.body)).encode()), *extra]


def json_response(content: Any, status_code: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response encoded with orjson (numpy arrays included)."""
    return Reply.json(content, status_code, headers).response()


INTERNAL_ERROR = Reply.json({"error": "internal server error; see the server log"}, 500)


def error_reply(error: Exception, method: str, path: str) -> Reply:
    """The one error renderer of both stacks (FastAPI's exception handlers and the fast path):
    {"error": "..."} with the status and headers of our errors, of FastAPI's validation errors
    and of Starlette's 404/405; anything else is a 500 whose traceback goes to the log only."""
    if isinstance(error, ServiceError):
        return Reply.json({"error": error.message}, error.status_code, error.headers)
    if isinstance(error, RequestValidationError):
        return Reply.json({"error": describe_validation_errors(error.errors())}, 400)
    if isinstance(error, HTTPException):
        if error.status_code == 404:
            message = f"no route {method} {path}; see /docs"
        elif error.status_code == 405:
            message = f"method {method} is not allowed on {path}"
        else:
            message = str(error.detail)
        return Reply.json({"error": message}, error.status_code, error.headers)
    logger.error("unexpected error on %s %s", method, path, exc_info=error)
    return INTERNAL_ERROR
