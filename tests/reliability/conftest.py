"""Fixtures of the reliability suite: its one config object, a real `mlp-serve` process on
127.0.0.1, and model repositories holding real ONNX files.

Default run (part of `make test`, a few minutes on 2 cores) vs. long run (`make reliability`):
set RELIABILITY_LONG=1 and every duration and count below switches to its long value. Single
knobs can be overridden too, e.g. RELIABILITY_LOAD_SECONDS=60.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tests.reliability.harness import figures
from tests.reliability.harness.server import ServerProcess, start_server
from tests.service.model_repo import write_model

API_KEY = "reliability-test-key-0123456789abcdef"


class ReliabilityConfig(BaseSettings):
    """How long and how hard the suite pushes; `long` fills unset knobs with the long values."""

    model_config = SettingsConfigDict(env_prefix="RELIABILITY_", extra="ignore", frozen=False)

    long: bool = False
    """RELIABILITY_LONG=1: the `make reliability` run (5 min load, 10,000 fuzz cases)."""
    load_seconds: float = Field(0, ge=0)
    """Sustained-load duration (default 30 s, long 300 s)."""
    load_clients: int = 64
    """Concurrent clients of the sustained-load test."""
    fuzz_cases: int = Field(0, ge=0)
    """Hand-written hypothesis tensor cases sent to the real server (default 1,000, long 10,000)."""
    openapi_examples: int = Field(0, ge=0)
    """schemathesis examples per API operation and mode (default 10, long 100)."""
    crash_runs: int = Field(0, ge=0)
    """SIGKILLed `mlp-train` runs (default 3, long 10); publish-only kills are 4x this."""
    seed: int = 20261129
    """Seed of every random choice in the suite (kill times, payloads, fuzz database-less runs)."""

    @model_validator(mode="after")
    def _fill_defaults(self) -> ReliabilityConfig:
        """Unset (0) knobs take the default or the long value."""
        defaults = {"load_seconds": (30, 300), "fuzz_cases": (1000, 10_000),
                    "openapi_examples": (10, 100), "crash_runs": (3, 10)}
        for name, (short, long) in defaults.items():
            if not getattr(self, name):
                setattr(self, name, long if self.long else short)
        return self


CONFIG = ReliabilityConfig()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability: runs a real mlp-serve or mlp-train process under stress"
    )


def pytest_report_header() -> str:
    return f"reliability: {CONFIG.model_dump()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what every reliability test measured (also without -s)."""
    lines = figures.render()
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def rel_config() -> ReliabilityConfig:
    return CONFIG


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartServer]:
    """Factory: `serve(repository, **MLP settings)` starts a ready server; all are stopped after."""
    started: list[ServerProcess] = []

    def _start(repository: Path, wait: bool = True, prefix: Sequence[str] = (),
               **settings: object) -> ServerProcess:
        env = {
            "MLP_REPOSITORY": str(repository),
            "MLP_API_KEY": API_KEY,
            "MLP_LOG_LEVEL": "warning",
            **{f"MLP_{key.upper()}": str(value) for key, value in settings.items()},
        }
        server = start_server(env, tmp_path / f"server-{len(started)}.log", prefix=prefix)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield _start
    for server in started:
        server.stop()


MODEL = "mnist-mlp"


@pytest.fixture
def model_repo(tmp_path: Path) -> Path:
    """A repository with version 1 of `mnist-mlp`, a real ONNX file (tests.service.model_repo)."""
    root = tmp_path / "models"
    write_model(root, MODEL, 1)
    return root
