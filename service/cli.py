"""`mlp-serve`: Settings from MLP_* env and flags, then uvicorn (uvloop, httptools) with our
SIGTERM handling: readiness false at once, in-flight work answered, exit 0 within the grace."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError

from service.affinity import pin_to_cpu
from service.app import create_app
from service.dataplane import Lifecycle
from service.settings import Settings

logger = logging.getLogger("mlp_serve")
STARTUP_FAILED_EXIT = 1
BAD_SETTINGS_EXIT = 2


def build_parser() -> argparse.ArgumentParser:
    """One flag per Settings field (help = the field's docstring); only given flags override."""
    parser = argparse.ArgumentParser(
        prog="mlp-serve", argument_default=argparse.SUPPRESS,
        description="Serve ONNX models over the Open Inference Protocol (V2) and KServe V1. "
        "Every flag also reads from MLP_<NAME> in the environment; flags win.",
    )
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=field.description)
        else:
            parser.add_argument(flag, dest=name, metavar=name.upper(), help=field.description)
    parser.add_argument("--no-control", dest="control_enabled", action="store_false",
                        help="same as --no-control-enabled: no model-control endpoints")
    return parser


def load_settings(argv: list[str] | None) -> Settings:
    """Settings from the environment with the flags on top; exits with one line on a bad value."""
    overrides: dict[str, Any] = vars(build_parser().parse_args(argv))
    if "api_key" in overrides:
        overrides["api_key"] = SecretStr(overrides["api_key"])
    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        where = f" {field} (MLP_{field.upper()} / --{field.replace('_', '-')})" if field else ""
        message = first["msg"].removeprefix("Value error, ")
        print(f"mlp-serve: invalid setting{where}: {message}", file=sys.stderr)
        raise SystemExit(BAD_SETTINGS_EXIT) from None


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose SIGTERM first drains: 503 for new work, answer in-flight, exit 0."""

    def __init__(self, config: uvicorn.Config, settings: Settings, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self.settings = settings
        self.lifecycle = lifecycle
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First SIGTERM/SIGINT starts draining; a second one exits at once."""
        if self.drain_started is None:
            self.drain_started = time.monotonic()
            self.lifecycle.draining = True
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
    """Plain one-line logs on stderr; uvicorn's chatter above warnings only (we log readiness)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(_DropUvicornStartupFailure())
    uvicorn_log.addFilter(_DropCancelledRequests())
    uvicorn_log.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def serve_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """uvicorn's Config for `app` (uvloop, httptools, our lifespan and grace), then our logging
    (after Config, which sets uvicorn's levels itself). Shared with the workers of --workers."""
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="uvloop", http="httptools",
        lifespan="on", access_log=False, log_config=None, log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]
        timeout_keep_alive=settings.keep_alive_s, server_header=False,
    )
    configure_logging(settings.log_level)
    return config


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mlp-serve` console script: one process, or a supervisor of
    `--workers N` processes (service/workers.py)."""
    settings = load_settings(argv)
    if settings.workers > 1:
        from service.workers import supervise  # here: workers.py imports this module

        raise SystemExit(supervise(settings))
    pin_to_cpu(0, settings)  # before create_app starts the model thread
    app = create_app(settings)
    server = DrainingServer(serve_config(app, settings), settings, app.state.lifecycle)
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILED_EXIT)


if __name__ == "__main__":
    main()
