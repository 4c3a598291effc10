"""Fixtures: a real tiny ONNX repository, in-process apps, and real uvicorn servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import uvicorn
from fastapi import FastAPI

from service.app import create_app
from service.settings import Settings
from tests.service.model_repo import write_model

API_KEY = "test-key-0123456789abcdef"
DATA = Path(__file__).parent / "data"
MODEL = "mnist-mlp"


def payload(name: str) -> dict[str, Any]:
    """A canned V2/V1 request from tests/service/data/."""
    return json.loads((DATA / f"{name}.json").read_text())  # type: ignore[no-any-return]


def reference(folder: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    """What onnxruntime says in-process for the model in `folder`."""
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities, label = session.run(None, {"input": rows.astype(np.float32)})
    return {"probabilities": probabilities, "label": label}


def pixels(rows: int, seed: int = 0) -> np.ndarray:
    """Random whole-number pixels 0..255 as float32 [rows, 784]."""
    return np.random.default_rng(seed).integers(0, 256, (rows, 784)).astype(np.float32)


def two_versions(root: Path) -> Path:
    """Write mnist-mlp versions 1 and 2 (different weights) under `root`."""
    write_model(root, MODEL, 1)
    write_model(root, MODEL, 2)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh repository with mnist-mlp versions 1 and 2, for tests that change it."""
    return two_versions(tmp_path / "models")


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository per test module, for tests that only read."""
    return two_versions(tmp_path_factory.mktemp("shared") / "models")


def settings_for(repo: Path, **overrides: Any) -> Settings:
    """Settings for tests: control on with a strong key, small limits where useful."""
    values: dict[str, Any] = {"repository": repo, "api_key": API_KEY, "max_rows_per_request": 64,
                              "max_body_bytes": 2_000_000}
    return Settings(**(values | overrides))


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[httpx.Client]:
    """Run `app` under uvicorn in a thread on a free 127.0.0.1 port; real HTTP, same process."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                            lifespan="on", access_log=False, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("in-thread server did not start")
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def app(repo: Path) -> FastAPI:
    """A fresh app over `repo` (serves mnist-mlp v2, the latest)."""
    return create_app(settings_for(repo))


@pytest.fixture
def client(app: FastAPI) -> Iterator[httpx.Client]:
    """An httpx client talking real HTTP to `app` running in a thread."""
    with serve_in_thread(app) as http:
        yield http


@pytest.fixture(scope="module")
def shared_client(shared_repo: Path) -> Iterator[httpx.Client]:
    """One in-thread server per test module over `shared_repo`, for tests that only read."""
    with serve_in_thread(create_app(settings_for(shared_repo))) as http:
        yield http


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`mlp-serve` in a subprocess on a free port; always stopped by the fixture."""

    def __init__(self, repo: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.repo = repo
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
        environment |= {"MLP_REPOSITORY": str(repo), "MLP_API_KEY": API_KEY,
                        "MLP_PORT": str(self.port)} | (env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *(args or [])], env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Poll /v2/health/ready until 200 (or fail with the server's stderr)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early: {self.process.stderr.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not become ready")

    def stop(self) -> tuple[int, str]:
        """Terminate (if still running) and return exit code and stderr."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return self.process.returncode, stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server per test module over a fresh repository (mnist-mlp v1, v2)."""
    root = two_versions(tmp_path_factory.mktemp("served") / "models")
    process = ServerProcess(root, env={"MLP_MAX_ROWS_PER_REQUEST": "64",
                                       "MLP_MAX_BODY_BYTES": "2000000"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
