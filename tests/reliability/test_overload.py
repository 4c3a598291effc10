"""Overload: a low queue bound and a short deadline, then far more load than the server can take.

One 10 s overload run (module fixture), two verdicts. Proves: the server sheds load with 503 +
Retry-After, never answers wrongly, never crashes, and serves normally again as soon as the load
drops; and (second test) that nothing queues without bound: the p99 of accepted requests and of
the 503s themselves stay under the deadline."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from tests.reliability import figures
from tests.reliability.conftest import API_KEY, MODEL
from tests.reliability.load import LoadReport, Outcome, run_load
from tests.reliability.server import ServerProcess, start_server
from tests.reliability.v2 import JSON, Reference, compare, error_shape_problem, read_answer, v2_body
from tests.service.model_repo import write_model

# The server's one-line request log: "POST /v2/models/m/infer 200 12.3ms ..." (for figures only).
LOG_LINE = re.compile(r"POST /v2/models/\S+/infer (\d{3}) ([\d.]+)ms")
DEADLINE_MS = 500
QUEUE_ROWS = 128
CLIENTS = 128
ROWS = 64


@dataclass
class Overload:
    """What one overload run produced."""

    server: ServerProcess
    report: LoadReport
    calm: LoadReport
    ready_after: int
    server_p99_ms: float | str


@pytest.fixture(scope="module")
def overload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Overload]:
    root = tmp_path_factory.mktemp("overload")
    write_model(root / "models", MODEL, 1)
    server = start_server({
        "MLP_REPOSITORY": str(root / "models"), "MLP_API_KEY": API_KEY, "MLP_LOG_LEVEL": "info",
        "MLP_MAX_QUEUE_ROWS": str(QUEUE_ROWS), "MLP_REQUEST_TIMEOUT_MS": str(DEADLINE_MS),
        "MLP_MAX_BATCH_SIZE": str(ROWS)}, root / "server.log")
    try:
        server.wait_ready()
        rows = np.random.default_rng(7).integers(0, 256, size=(ROWS, 784))
        body = v2_body(rows)
        expected = Reference(root / "models" / MODEL / "1" / "model.onnx").run(rows)

        async def send(client: httpx.AsyncClient, worker: int, seq: int) -> Outcome:
            started = time.monotonic()
            response = await client.post(f"/v2/models/{MODEL}/infer", content=body,
                                         headers=JSON)
            latency, status = time.monotonic() - started, response.status_code
            if status == 200:
                answer = read_answer(response.content)
                return Outcome(200, latency, problem=compare(expected, answer))
            problem = error_shape_problem(status, response.content)
            retry_after = response.headers.get("retry-after")
            if status == 503 and not (retry_after or "").isdigit():
                problem = f"503 without a Retry-After in seconds: {retry_after!r}"
            elif status not in (503, 504):
                problem = f"unexpected {status}: {response.text[:200]}"
            return Outcome(status, latency, problem=problem, retry_after=retry_after)

        report = asyncio.run(run_load(server.base_url, send, CLIENTS, 10.0, 100_000))
        alive = server.proc.poll() is None
        calm = asyncio.run(run_load(server.base_url, send, 1, 3.0, 20)) if alive else LoadReport()
        ready = httpx.get(f"{server.base_url}/v2/health/ready").status_code if alive else 0
        server_ms = [float(ms) for code, ms in LOG_LINE.findall(server.log()) if code == "200"]
        server_p99 = round(float(np.percentile(server_ms, 99)), 1) if server_ms else "n/a"
        print(report.summary())
        figures.record(
            "overload", clients=CLIENTS, rows_per_request=ROWS, deadline_ms=DEADLINE_MS,
            queue_rows=QUEUE_ROWS, requests=len(report.outcomes), accepted=report.count(200),
            shed_503=report.count(503), timed_out_504=report.count(504),
            bad=sum(1 for o in report.outcomes if o.problem),
            accepted_p50_ms=round(report.latency_ms(50), 1),
            accepted_p99_ms=round(report.latency_ms(99), 1),
            server_side_accepted_p99_ms=server_p99,
            p99_503_ms=round(report.latency_ms(99, 503), 1),
            after_calm_p50_ms=round(calm.latency_ms(50), 1))
        yield Overload(server, report, calm, ready, server_p99)
    finally:
        server.stop()


def test_overload_sheds_with_503_and_recovers(overload: Overload) -> None:
    report = overload.report
    bad = [o for o in report.outcomes if o.problem]
    assert bad == [], f"{len(bad)} bad answers, first: {bad[:3]}"
    assert report.count(503) > 0, f"nothing was shed at {CLIENTS} clients: {report.summary()}"
    assert report.count(200) > 0, report.summary()
    assert overload.server.proc.poll() is None, overload.server.log()
    # Load gone: one client gets normal service right away.
    assert overload.calm.outcomes, "no request after the overload"
    assert [o.status for o in overload.calm.outcomes] == [200] * len(overload.calm.outcomes)
    assert overload.ready_after == 200


@pytest.mark.xfail(strict=True, reason=(
    "bug (open, see RELIABILITY.md bug 3): load is shed only after the body is read and "
    "JSON-decoded and the deadline starts after decoding, so under 128 clients the p99 of "
    "accepted requests is 7-11 s and 503s take up to 12 s, against a 500 ms deadline"))
def test_overload_never_queues_past_the_deadline(overload: Overload) -> None:
    p99, shed_p99 = overload.report.latency_ms(99), overload.report.latency_ms(99, 503)
    assert p99 < DEADLINE_MS and shed_p99 < DEADLINE_MS, (
        f"p99 of accepted requests {p99:.0f} ms (server-side {overload.server_p99_ms} ms) and "
        f"of 503s {shed_p99:.0f} ms, deadline {DEADLINE_MS} ms: load is shed only after the "
        f"body is read and decoded, so requests queue before the server looks at them"
    )
