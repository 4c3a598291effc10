"""Reload under load: publish version 2 and load it while 32 clients keep sending requests; then
try three corrupt version 3s (bad sha256, truncated file, wrong input shape).

Version 2 is then loaded 4 more times (each load swaps in a fresh session), so several swaps
happen under load. Proves: a version swap drops no request, every answer is the right model's
answer for the version it names (model_version), answers switch from 1 to 2 once the load call
returns and never go back, and a corrupt version is refused with a clear 4xx while version 2
keeps serving."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest

from tests.reliability.conftest import API_KEY, MODEL, StartServer
from tests.reliability.harness import figures
from tests.reliability.harness.load import LoadReport, Outcome, run_load
from tests.reliability.harness.v2 import JSON, Reference, compare, read_answer, v2_body
from tests.service.model_repo import build_onnx, card
from training.publish import publish

CLIENTS = 32
RELOADS = 4
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def files(onnx_bytes: bytes, version: int, card_sha: str | None = None,
          inputs: int = 784) -> dict[str, bytes]:
    """model.onnx + model.json for `version`; `card_sha` overrides the (true) checksum."""
    content = card(MODEL, version, onnx_bytes, 10)
    if card_sha is not None:
        content["onnx"]["sha256"] = card_sha  # type: ignore[index]
    content["inputs"][0]["shape"] = [-1, inputs]  # type: ignore[index]
    return {"model.onnx": onnx_bytes, "model.json": json.dumps(content).encode()}


def narrow_input_model(version: int, features: int = 100) -> bytes:
    """A valid ONNX file like the real ones but taking [N, 100]: a wrong input shape."""
    proto = onnx.load_from_string(build_onnx(10, version, version=version))
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value = features
    weight = next(t for t in proto.graph.initializer if t.name == "weight")
    array = onnx.numpy_helper.to_array(weight)[:features]
    weight.CopyFrom(onnx.numpy_helper.from_array(array, "weight"))
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def corrupt_version(case: str, version: int) -> dict[str, bytes]:
    good = build_onnx(10, version, version=version)
    if case == "bad-sha256":
        return files(good, version, card_sha=hashlib.sha256(b"other").hexdigest())
    if case == "truncated":  # the card matches the cut file, so only loading can catch it
        return files(good[: len(good) // 2], version)
    return files(narrow_input_model(version), version, inputs=100)


CORRUPT = {"bad-sha256": "sha256", "truncated": "onnxruntime cannot load",
           "wrong-input-shape": "input"}


def test_reload_under_load_drops_nothing_and_refuses_corrupt_versions(
    serve: StartServer, model_repo: Path
) -> None:
    server = serve(model_repo)
    rng = np.random.default_rng(11)
    pool = [rng.integers(0, 256, size=(n, 784)) for n in range(1, 65)]
    bodies = [v2_body(rows) for rows in pool]
    references: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray]]] = {}

    def expect(version: str) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
        reference = Reference(model_repo / MODEL / version / "model.onnx")
        answers = [reference.run(rows) for rows in pool]
        return answers.__getitem__

    references["1"] = expect("1")

    async def send(client: httpx.AsyncClient, worker: int, seq: int) -> Outcome:
        index = (worker * 5 + seq * 3) % len(bodies)
        started = time.monotonic()
        response = await client.post(f"/v2/models/{MODEL}/infer", content=bodies[index],
                                     headers=JSON)
        latency = time.monotonic() - started
        if response.status_code != 200:
            return Outcome(response.status_code, latency, problem=response.text[:300])
        answer = read_answer(response.content)
        version = answer.model_version
        if version not in references:
            return Outcome(200, latency, problem=f"unknown version {version}", version=version)
        return Outcome(200, latency, problem=compare(references[version](index), answer),
                       version=version)

    report = LoadReport()
    loader = threading.Thread(target=lambda: report.__dict__.update(
        asyncio.run(run_load(server.base_url, send, CLIENTS, 14.0, 1_000_000)).__dict__))
    loader.start()
    try:
        time.sleep(2.5)
        folder = publish(model_repo, MODEL, lambda v: files(build_onnx(10, v, version=v), v))
        assert folder.name == "2"
        references["2"] = expect("2")
        load = httpx.post(f"{server.base_url}/v2/repository/models/{MODEL}/load",
                          headers=AUTH, timeout=30)
        loaded_at = time.monotonic()
        assert load.status_code == 200, load.text
        assert load.json()["version"] == "2"
        for _ in range(RELOADS):  # loading v2 again swaps in a fresh session each time
            time.sleep(0.4)
            again = httpx.post(f"{server.base_url}/v2/repository/models/{MODEL}/load",
                               headers=AUTH, timeout=30)
            assert again.status_code == 200 and again.json()["version"] == "2", again.text
        time.sleep(0.5)
        refusals = {}
        for case, expected_text in CORRUPT.items():
            bad = publish(model_repo, MODEL, lambda v, c=case: corrupt_version(c, v))
            assert bad.name == "3"
            response = httpx.post(f"{server.base_url}/v2/repository/models/{MODEL}/load",
                                  headers=AUTH, timeout=30)
            refusals[case] = response.status_code
            assert response.status_code == 409, (case, response.text)
            message = response.json()["error"]
            assert "version 3" in message and expected_text in message, (case, message)
            shutil.rmtree(bad)
            time.sleep(1.0)
    finally:
        loader.join(60)

    failures = report.failures()
    versions = {v: sum(1 for o in report.outcomes if o.version == v) for v in ("1", "2", "3")}
    late_ones = [o for o in report.outcomes if o.version == "1" and o.started_s > loaded_at]
    figures.record("reload-under-load", clients=CLIENTS, swaps=1 + RELOADS,
                   requests=len(report.outcomes),
                   failures=len(failures), answered_by_version=versions,
                   corrupt_refusals=refusals, summary=report.summary())
    print(report.summary())
    assert failures == [], f"{len(failures)} failed, first: {failures[:3]}"
    assert versions["1"] > 0 and versions["2"] > 0 and versions["3"] == 0, versions
    assert late_ones == [], f"{len(late_ones)} requests sent after the load returned got v1"
    if server.proc.poll() is not None:
        pytest.fail(f"server died:\n{server.log()}")
