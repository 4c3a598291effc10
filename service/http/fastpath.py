"""The fast path: how production serves POST /v2/models/{name}[/versions/{v}]/infer and
POST /v1/models/{name}:predict, straight from ASGI with the same endpoint code as FastAPI's
routes, for less CPU.

Why: at 64 clients FastAPI's request handling (its middleware layers, a scan of every route,
dependency solving, Request and Response objects) cost more server CPU than parsing and
inference together (bench/README.md). `HotPath` sits right inside the request log, outside
FastAPI: a POST whose path matches a hot route goes to that route's plain endpoint
(`serve_infer`, `serve_predict`: the very functions the FastAPI routes call) with a `Call`
built from the scope; the `Reply` is sent as two ASGI messages. Errors are rendered by
`error_reply`, as FastAPI's exception handlers render them. Every other request, and the
OpenAPI documentation of these routes, stays with FastAPI.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route, get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.http.call import SCOPE_KEY, Call, Reply, error_reply
from service.models.dataplane import DataPlane

PlainEndpoint = Callable[..., Awaitable[Reply]]  # (dataplane, call, **path params) -> Reply
HotRoute = tuple[Route, PlainEndpoint]


class HotPath:
    """Serve the hot routes directly; hand every other request to `app` (the FastAPI stack).

    `hot` pairs FastAPI routes, as their router declares them, with their plain endpoints. At build
    time each plain endpoint is checked to take the route's path parameters, and no other POST
    route of `owner` may match a hot path, so FastAPI's router would have picked the same one.
    """

    def __init__(self, app: ASGIApp, owner: Any, dataplane: DataPlane,
                 hot: Sequence[HotRoute]) -> None:
        self.app = app
        self.dataplane = dataplane
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
        scope["route"] = route  # the request log labels its metrics with it, as for FastAPI
        call = Call.from_scope(scope, receive, scope[SCOPE_KEY])
        try:
            reply = await endpoint(self.dataplane, call, **params)
        except ClientDisconnect:
            raise  # nobody to answer: the request log records it
        except Exception as error:
            reply = error_reply(error, scope["method"], scope["path"])
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": reply.raw_headers()})
        await send({"type": "http.response.body", "body": reply.body})


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
