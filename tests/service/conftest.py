"""Fixtures: a real tiny ONNX repository, in-process apps, and real uvicorn servers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from fastapi import FastAPI

from service.http.app import create_app
from service.models.repository import ModelVersion
from service.settings import Settings
from tests.service.model_repo import write_model
from tests.service.servers import API_KEY, ServerProcess, serve_in_thread

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
    """Settings for tests: control on with a strong key, small limits where useful, gRPC on
    any free port (when a test serves it)."""
    values: dict[str, Any] = {"repository": repo, "api_key": API_KEY, "max_rows_per_request": 64,
                              "max_body_bytes": 2_000_000, "grpc_port": 0}
    return Settings(**(values | overrides))


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


class HeldModel:
    """Wraps ModelVersion.run: counts calls, and holds the first one until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self._real = ModelVersion.run

    def run(self, version: ModelVersion, rows: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(20), "the test never released the model"
        return self._real(version, rows)


def held_settings(repo: Path, **overrides: Any) -> Settings:
    """A held model must hold the model thread, not the event loop: no inline model calls."""
    return settings_for(repo, inline_max_rows=0, **overrides)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldModel]:
    model = HeldModel()
    monkeypatch.setattr(ModelVersion, "run", lambda self, rows: model.run(self, rows))
    yield model
    model.release.set()  # never leave the server's model thread blocked


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)
