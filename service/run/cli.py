"""`mlp-serve`: Settings from MLP_* env and flags, then one draining server
(service/run/server.py), or a supervisor of `--workers N` of them (service/run/supervisor.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import SecretStr, ValidationError

from service.http.app import create_app, ready_message
from service.run import predict
from service.run.affinity import pin_to_cpu
from service.run.server import (
    STARTUP_FAILED_EXIT,
    DrainingServer,
    configure_logging,
    listen_socket,
    serve_config,
)
from service.run.supervisor import listen_error, supervise
from service.settings import Settings, unknown_environment

logger = logging.getLogger("mlp_serve")

BAD_SETTINGS_EXIT = 2


def build_parser() -> argparse.ArgumentParser:
    """One flag per Settings field (help = the field's docstring, its default and its MLP_*
    variable); only given flags override."""
    parser = argparse.ArgumentParser(
        prog="mlp-serve", argument_default=argparse.SUPPRESS,
        description="Serve ONNX models over the Open Inference Protocol (V2) and KServe V1. "
        "Every flag also reads from MLP_<NAME> in the environment; flags win.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = "not set" if name == "api_key" else f"{field.default!s}"
        text = f"{field.description} (default: {default or 'empty'}; env MLP_{name.upper()})"
        text = text.replace("%", "%%")  # argparse formats help with %
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(flag, dest=name, metavar=name.upper(), help=text)
    parser.add_argument("--no-control", dest="control_enabled", action="store_false",
                        help="same as --no-control-enabled: no model-control endpoints")
    return parser


def package_version() -> str:
    """The installed mlp-serve version (both commands report the same)."""
    try:
        return version("mlp-serve")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def load_settings(argv: list[str] | None) -> Settings:
    """Settings from the environment with the flags on top; exits with one line on a bad value."""
    overrides: dict[str, Any] = vars(build_parser().parse_args(argv))
    unknown = unknown_environment()
    if unknown is not None:
        print(f"mlp-serve: invalid setting: {unknown}", file=sys.stderr)
        raise SystemExit(BAD_SETTINGS_EXIT)
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mlp-serve` console script: one process, or a supervisor of
    `--workers N` processes; `mlp-serve predict ...` predicts a file without a server."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["predict"]:
        predict.main(args[1:])
        return
    settings = load_settings(argv)
    if settings.workers > 1:
        raise SystemExit(supervise(settings))
    configure_logging(settings.log_level)
    try:  # first: a taken port is one line, before any model loads
        sock = listen_socket(settings.host, settings.port, reuse_port=False)
    except OSError as error:
        logger.error(listen_error(settings.host, settings.port, "--port (MLP_PORT)", error))
        raise SystemExit(STARTUP_FAILED_EXIT) from None
    listening = settings.model_copy(update={"port": sock.getsockname()[1]})  # --port 0 too
    pin_to_cpu(0, settings)  # before create_app starts the model thread
    app = create_app(settings)
    server = DrainingServer(serve_config(app, settings), settings, app.state.lifecycle,
                            on_started=lambda: logger.info(
                                ready_message(listening, app.state.registry.names())))
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(STARTUP_FAILED_EXIT)


if __name__ == "__main__":
    main()
