"""The inference routes straight from ASGI: same endpoint code as FastAPI's routes, less CPU.

Why: at 64 clients FastAPI's request handling (its middleware layers, a scan of every route,
dependency solving, Request and Response objects) cost more server CPU than parsing and
inference together (bench/README.md). `HotPath` is the app's outermost layer: a POST whose path
matches a hot route goes to that route's plain endpoint (`serve_infer`, `serve_predict`: the
very functions the FastAPI routes call) with a `Call` built from the scope; the `Reply` is sent
as two ASGI messages. Errors get the same `{"error"}` replies as FastAPI's exception handlers,
and the same request log records the request. Every other request, and the OpenAPI
documentation of these routes, stays with FastAPI.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route, get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError
from service.http.call import Call, Reply
from service.http.requestlog import REQUEST_ID, RequestLog
from service.models.dataplane import DataPlane

logger = logging.getLogger("mlp_serve")
PlainEndpoint = Callable[..., Awaitable[Reply]]  # (dataplane, call, **path params) -> Reply
HotRoute = tuple[Route, PlainEndpoint]
CLIENT_CLOSED = 499  # logged when the client went away before its answer (nginx's code)
INTERNAL_ERROR = Reply.json({"error": "internal server error; see the server log"}, 500)


class HotPath:
    """Serve the hot routes directly; hand every other request to `app` (the FastAPI stack).

    `hot` pairs FastAPI routes, as their router declares them, with their plain endpoints. At build
    time each plain endpoint is checked to take the route's path parameters, and no other POST
    route of `owner` may match a hot path, so FastAPI's router would have picked the same one.
    """

    def __init__(self, app: ASGIApp, owner: Any, dataplane: DataPlane, log: RequestLog,
                 hot: Sequence[HotRoute]) -> None:
        self.app = app
        self.dataplane = dataplane
        self.log = log
        self.routes = list(hot)
        for route, endpoint in self.routes:
            _check_signature(route, endpoint)
        _check_no_overlap(owner.router.routes, [route for route, _ in self.routes])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = get_route_path(scope)
            for route, endpoint in self.routes:
                found = route.path_regex.match(path)
                if found is not None:
                    params = {key: route.param_convertors[key].convert(value)
                              for key, value in found.groupdict().items()}
                    await self._serve(route, endpoint, params, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, route: Route, endpoint: PlainEndpoint, params: dict[str, Any],
                     scope: Scope, receive: Receive, send: Send) -> None:
        note = self.log.start(scope)
        status = CLIENT_CLOSED
        try:
            try:
                reply = await endpoint(self.dataplane, Call.from_scope(scope, receive, note),
                                       **params)
            except ServiceError as error:
                reply = Reply.error(error)
            except ClientDisconnect:
                return
            except Exception:
                logger.exception("unexpected error on %s %s", scope["method"], scope["path"])
                reply = INTERNAL_ERROR
            status = reply.status
            await send({"type": "http.response.start", "status": status,
                        "headers": reply.raw_headers((REQUEST_ID, note["request_id"].encode()),
                                                     *self.log.closing())})
            await send({"type": "http.response.body", "body": reply.body})
        finally:
            self.log.finish(scope, note, route.path, status)


def hot_routes(routes: Iterable[BaseRoute], endpoints: Mapping[Callable[..., Any], PlainEndpoint]
               ) -> list[HotRoute]:
    """(route, plain endpoint) for the routes (of a router) whose FastAPI endpoint is a key of
    `endpoints`, in the router's order."""
    found = [(r, endpoints[r.endpoint]) for r in routes
             if isinstance(r, Route) and r.endpoint in endpoints]
    missing = set(endpoints) - {r.endpoint for r, _ in found}
    if missing:
        raise RuntimeError(f"no route for hot endpoints {sorted(e.__name__ for e in missing)}")
    return found


def _flatten(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, descending into FastAPI's included-router branches."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield route


def _check_no_overlap(routes: Iterable[BaseRoute], hot: list[Route]) -> None:
    """Refuse to start if another POST route matches a hot route's path."""
    hot_endpoints = {route.endpoint for route in hot}
    samples = [(route.path, re.sub(r"{[^}]*}", "x1", route.path_format)) for route in hot]
    for other in _flatten(routes):
        if isinstance(other, Route) and other.endpoint in hot_endpoints:
            continue
        methods = getattr(other, "methods", None)
        regex = getattr(other, "path_regex", None)
        if methods is not None and "POST" not in methods:
            continue
        for path, sample in samples:
            if regex is None or regex.match(sample):
                raise RuntimeError(f"route {getattr(other, 'path', other)!r} may also match "
                                   f"POST {path}; HotPath would bypass it")


def _check_signature(route: Route, endpoint: PlainEndpoint) -> None:
    """A plain endpoint takes (dataplane, call) and exactly the route's path parameters."""
    try:
        inspect.signature(endpoint).bind(None, None, **dict.fromkeys(route.param_convertors))
    except TypeError as error:
        raise RuntimeError(f"plain endpoint {endpoint.__name__} cannot serve {route.path}: "
                           f"{error}") from None
