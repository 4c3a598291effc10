"""The uvicorn server of `mlp-serve` (uvloop, httptools) with our SIGTERM handling: readiness
false at once, in-flight work answered, exit 0 within the grace. One process runs one; with
`--workers N` each worker runs one (service/run/supervisor.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from service.errors import StartupError
from service.grpc.server import GrpcServer
from service.http.connections import GuardedProtocol, guarded_protocol
from service.http.spread import Spread
from service.logs import OneLineHandler
from service.models.dataplane import Lifecycle
from service.settings import Settings

logger = logging.getLogger("mlp_serve")
STARTUP_FAILED_EXIT = 1


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEADDR (and SO_REUSEPORT: every worker
    binds its own and the kernel balances connections between them); listen() comes later."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose SIGTERM first drains: 503 for new work, answer in-flight, exit 0.

    `on_started` runs once the models are loaded and the socket listens (the ready line, or a
    worker's report): never earlier, so "ready" is never followed by a bind error.
    """

    def __init__(self, config: uvicorn.Config, settings: Settings, lifecycle: Lifecycle,
                 on_started: Callable[[], None] | None = None,
                 spread: Spread | None = None) -> None:
        super().__init__(config)
        self.settings = settings
        self.lifecycle = lifecycle
        self.on_started = on_started
        self.spread = spread
        self._handed_in: set[asyncio.Task[Any]] = set()  # connections being set up
        self.drain_started: float | None = None
        self.grpc: GrpcServer | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up (lifespan: the models; then the HTTP listener), then the gRPC
        listener in this same loop, over the same app, so both feed the same batchers. A gRPC
        port someone else holds stops start-up first, before the models load. Then
        `on_started`, once both listen."""
        host, port = self.settings.host, self.settings.grpc_port
        try:
            listen_socket(host, port, reuse_port=self.settings.workers > 1).close()
        except OSError as error:
            logger.error("cannot start: cannot listen for gRPC on %s:%d: %s; stop what listens "
                         "there or choose another --grpc-port (MLP_GRPC_PORT)", host, port,
                         error.strerror)
            self.should_exit = True
            return
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        grpc = GrpcServer.for_app(self.config.app)
        try:
            await grpc.start(reuse_port=self.settings.workers > 1)
        except StartupError as error:
            logger.error("cannot start: %s", error)
            self.started, self.should_exit = False, True
            return
        self.grpc = grpc
        if self.spread is not None:
            self.spread.start(asyncio.get_running_loop(), self._serve_handed_in)
        if self.started and self.on_started is not None:
            self.on_started()

    def _serve_handed_in(self, conn: socket.socket) -> None:
        """Serve a connection another worker accepted and handed over, as uvicorn serves the
        ones it accepts (the same protocol class, state and connection set)."""
        protocol_class = self.config.http_protocol_class
        assert issubclass(protocol_class, GuardedProtocol)  # serve_config's, as every worker's

        def protocol() -> GuardedProtocol:
            made = protocol_class(config=self.config, server_state=self.server_state,
                                  app_state=self.lifespan.state)
            made.handed_in = True
            return made

        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(protocol, conn))
        self._handed_in.add(task)
        task.add_done_callback(self._handed_in_done)

    def _handed_in_done(self, task: asyncio.Task[Any]) -> None:
        self._handed_in.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("cannot serve a connection handed from another worker: %s",
                           task.exception())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop the gRPC listener (running RPCs get what is left of the grace), then uvicorn's
        shutdown, whose lifespan drains the models."""
        if self.grpc is not None:
            await self.grpc.stop(0 if self.force_exit else
                                 float(self.config.timeout_graceful_shutdown or 0))
            self.grpc = None
        if self.spread is not None:
            self.spread.stop(asyncio.get_running_loop())
        await super().shutdown(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First SIGTERM/SIGINT starts draining; a second one exits at once."""
        if self.drain_started is None:
            self.drain_started = time.monotonic()
            self.lifecycle.draining = True
            if self.spread is not None:
                self.spread.close_door()
            logger.info("shutting down: not ready, finishing %d in-flight requests",
                        self.lifecycle.in_flight)
        else:
            logger.warning("second signal: exiting now, cutting off %d in-flight requests",
                           self.lifecycle.in_flight)
            self.should_exit = self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        """Stop listening once the delay passed and nothing is in flight (or the grace ended)."""
        if self.drain_started is not None and not self.should_exit:
            waited = time.monotonic() - self.drain_started
            idle = self.lifecycle.in_flight == 0
            grace = self.settings.shutdown_grace_s
            if (idle and waited >= self.settings.shutdown_delay_s) or waited >= grace:
                if not idle:
                    logger.warning("shutdown grace of %.0f s is over: cutting off %d in-flight "
                                   "requests", grace, self.lifecycle.in_flight)
                # uvicorn's own wait for open connections gets what is left of the grace
                # (it only hands the value to asyncio.wait_for, so a float is fine).
                self.config.timeout_graceful_shutdown = max(0.1, grace - waited)  # type: ignore[assignment]
                self.should_exit = True
        return await super().on_tick(counter)


class _DropUvicornStartupFailure(logging.Filter):
    """Our lifespan already printed the one clear line; drop uvicorn's generic echo of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Application startup failed")
                    or (message.startswith("Traceback") and "StartupError" in message))


class _DropCancelledRequests(logging.Filter):
    """Requests cut off at a forced or overdue shutdown end in CancelledError, which uvicorn
    logs as one traceback each; the one warning line above already says how many."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is asyncio.CancelledError:
            return False
        message = record.getMessage()
        return not (message.startswith("Traceback")
                    and message.rstrip().endswith("CancelledError"))


def configure_logging(level: str) -> None:
    """Plain one-line logs on stderr; uvicorn's chatter above warnings only (we log readiness).

    Every request logs one INFO line, so a record must be cheap: the format names no thread,
    process or source line, and logging is told not to collect them (the Python logging HOWTO's
    "Optimization" settings; bench/request_log.py measures the line)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no caller lookup per record: the format has no file or line
    logging.basicConfig(level=level.upper(), handlers=[OneLineHandler(sys.stderr)])
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(_DropUvicornStartupFailure())
    uvicorn_log.addFilter(_DropCancelledRequests())
    uvicorn_log.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def serve_config(app: FastAPI, settings: Settings, spread: Spread | None = None
                 ) -> uvicorn.Config:
    """uvicorn's Config for `app` (uvloop, httptools, our lifespan and grace), then our logging
    (after Config, which sets uvicorn's levels itself). Shared with the workers of --workers,
    which pass their `Spread`."""
    protocol = guarded_protocol(settings.max_header_bytes, settings.header_timeout_s,
                                settings.max_connections, settings.max_body_bytes, spread)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="uvloop", http=protocol,
        lifespan="on", access_log=False, log_config=None, log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]
        timeout_keep_alive=settings.keep_alive_s, server_header=False,
    )
    configure_logging(settings.log_level)
    return config
