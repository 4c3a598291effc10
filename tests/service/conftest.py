"""Fixtures: a real tiny ONNX repository, in-process apps, and real uvicorn servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from fastapi import FastAPI

from service.http.app import create_app
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
