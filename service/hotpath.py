"""The inference routes without FastAPI's per-request machinery: same endpoints, less CPU.

Why: at 64 clients FastAPI's request handling (four middleware layers, a scan of every route,
dependency solving) cost more server CPU than parsing and inference together (bench/README.md).
`HotPath` sits in front of the FastAPI middleware stack and, for a POST whose first matching route
is one of the given endpoints, calls that very endpoint function itself -- the same code FastAPI
would call, with the same `Request`, path parameters and `dataplane` -- and renders its errors with
the app's own exception handlers. Every other request, and the OpenAPI documentation of these
routes, stays with FastAPI. The request log middleware wraps both, so logs, metrics and
X-Request-ID are identical on either path.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import BaseRoute, Route, get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[..., Any]
INJECTED = {"request", "dataplane"}


class HotPath:
    """Serve `hot` routes directly; hand everything else to `app` (the FastAPI stack).

    `hot` are the APIRoutes as their router declares them (FastAPI >= 0.16x keeps included
    routers as opaque branches, so the app's route list cannot be scanned). At build time every
    other POST route of the app is checked not to match a hot path, so the router would have
    picked the same endpoint.
    """

    def __init__(self, app: ASGIApp, owner: FastAPI, hot: Collection[Route]) -> None:
        self.app = app
        self.owner = owner
        self.dataplane = owner.state.dataplane
        self.routes = list(hot)
        for route in self.routes:
            _check_signature(route)
        _check_no_overlap(owner.router.routes, self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = get_route_path(scope)
            for route in self.routes:
                found = route.path_regex.match(path)
                if found is not None:
                    params = {key: route.param_convertors[key].convert(value)
                              for key, value in found.groupdict().items()}
                    await self._serve(route, params, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, route: Route, params: dict[str, Any], scope: Scope,
                     receive: Receive, send: Send) -> None:
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, params
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request=request, dataplane=self.dataplane, **params)
        except Exception as error:
            handler = self._handler(error)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(scope, receive, send)

    def _handler(self, error: Exception) -> Callable[..., Any] | None:
        """The app's exception handler for `error`, looked up along its MRO as Starlette does."""
        handlers = self.owner.exception_handlers
        for cls in type(error).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None


def hot_routes(routes: Iterable[BaseRoute], endpoints: Collection[Endpoint]) -> list[Route]:
    """The routes (of a router, in its order) whose endpoint is one of `endpoints`."""
    found = [r for r in routes if isinstance(r, Route) and r.endpoint in set(endpoints)]
    missing = set(endpoints) - {r.endpoint for r in found}
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


def _check_signature(route: Route) -> None:
    """A hot endpoint takes only its path parameters, `request` and `dataplane`."""
    names = set(inspect.signature(route.endpoint).parameters)
    expected = set(route.param_convertors) | INJECTED
    if names != expected:
        raise RuntimeError(f"hot endpoint {route.endpoint.__name__} takes {sorted(names)}; "
                           f"HotPath can only pass {sorted(expected)}")
