"""`mlp-serve` flags and environment as a new user meets them: --help shows defaults and MLP_*
names, --version, misspelt MLP_* names refused with the closest one, case-insensitive levels,
and a taken port as one line with no "ready" before it (the real process)."""

from __future__ import annotations

import socket
from importlib.metadata import version
from pathlib import Path

import pytest

from service.run.cli import build_parser, load_settings
from service.settings import Settings, unknown_environment
from tests.service.model_repo import write_model
from tests.service.servers import ServerProcess, free_port


def test_help_shows_each_default_and_variable() -> None:
    text = " ".join(build_parser().format_help().split())
    for name in Settings.model_fields:
        assert f"env MLP_{name.upper()})" in text, name
    assert "--port PORT TCP port to listen on. (default: 8000; env MLP_PORT)" in text
    assert "(default: not set; env MLP_API_KEY)" in text
    assert "(default: models; env MLP_REPOSITORY)" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"mlp-serve {version('mlp-serve')}\n"


@pytest.mark.parametrize(("name", "line"), [
    ("MLP_MAX_BATCHSIZE", "unknown environment variable MLP_MAX_BATCHSIZE; did you mean "
     "MLP_MAX_BATCH_SIZE? (every MLP_* variable is a setting; mlp-serve --help lists them)"),
    ("MLP_WORKER", "unknown environment variable MLP_WORKER; did you mean MLP_WORKERS? (every "
     "MLP_* variable is a setting; mlp-serve --help lists them)"),
    ("mlp_apikey", "unknown environment variable mlp_apikey; did you mean MLP_API_KEY? (every "
     "MLP_* variable is a setting; mlp-serve --help lists them)"),
    ("MLP_COLOUR", "unknown environment variable MLP_COLOUR (every MLP_* variable is a setting; "
     "mlp-serve --help lists them)"),
])
def test_a_misspelt_variable_refuses_start(name: str, line: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(name, "8")
    with pytest.raises(SystemExit) as done:
        load_settings(["--no-control"])
    assert done.value.code == 2
    assert capsys.readouterr().err == f"mlp-serve: invalid setting: {line}\n"


def test_names_that_are_not_settings_but_not_typos_either() -> None:
    """compose's host port, and what Kubernetes injects for a Service named mlp-serve."""
    assert unknown_environment({
        "MLP_PUBLISH_PORT": "8080", "MLP_SERVE_SERVICE_HOST": "10.0.0.7",
        "MLP_SERVE_SERVICE_PORT": "8000", "MLP_SERVE_SERVICE_PORT_HTTP": "8000",
        "MLP_SERVE_PORT": "tcp://10.0.0.7:8000", "MLP_SERVE_PORT_8000_TCP_ADDR": "10.0.0.7",
        "MLP_PORT": "8000", "PATH": "/bin"}) is None


def test_levels_in_any_case() -> None:
    settings = load_settings(["--no-control", "--log-level", "INFO", "--cpu-pinning", "Off"])
    assert (settings.log_level, settings.cpu_pinning) == ("info", "off")


def test_a_taken_port_is_one_line_and_never_ready(tmp_path: Path) -> None:
    write_model(tmp_path / "models", "mnist-mlp", 1)
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        server = ServerProcess(tmp_path / "models", env={"MLP_PORT": str(port)})
        server.process.wait(timeout=120)
        code, text = server.stop()
    assert code == 1
    (line,) = text.splitlines()
    assert line.split(" mlp_serve: ", 1)[1] == (
        f"cannot start: cannot listen on 127.0.0.1:{port}: Address already in use; stop what "
        "listens there or choose another --port (MLP_PORT)")
