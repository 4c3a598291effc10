"""Overload: a low queue bound and a short deadline, then far more load than the server can take.

Proves: the server sheds load with 503 + Retry-After instead of queueing without bound (the
503s themselves arrive within the deadline, p99), every request it does accept is answered
within the deadline (p99), it never crashes, and it serves normally again as soon as the load
drops."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import numpy as np

from tests.reliability import figures
from tests.reliability.conftest import MODEL, StartServer
from tests.reliability.load import Outcome, run_load
from tests.reliability.v2 import JSON, Reference, compare, error_shape_problem, read_answer, v2_body

# The server's one-line request log: "POST /v2/models/m/infer 200 12.3ms ..." (for figures only).
LOG_LINE = re.compile(r"POST /v2/models/\S+/infer (\d{3}) ([\d.]+)ms")
DEADLINE_MS = 500
QUEUE_ROWS = 128
CLIENTS = 128
ROWS = 64


def test_overload_sheds_with_503_and_recovers(serve: StartServer, model_repo: Path) -> None:
    server = serve(model_repo, max_queue_rows=QUEUE_ROWS, request_timeout_ms=DEADLINE_MS,
                   max_batch_size=ROWS, log_level="info")
    rows = np.random.default_rng(7).integers(0, 256, size=(ROWS, 784))
    body = v2_body(rows)
    expected = Reference(model_repo / MODEL / "1" / "model.onnx").run(rows)

    async def send(client: httpx.AsyncClient, worker: int, seq: int) -> Outcome:
        started = time.monotonic()
        response = await client.post(f"/v2/models/{MODEL}/infer", content=body, headers=JSON)
        latency = time.monotonic() - started
        status = response.status_code
        if status == 200:
            return Outcome(200, latency, problem=compare(expected, read_answer(response.content)))
        problem = error_shape_problem(status, response.content)
        retry_after = response.headers.get("retry-after")
        if status == 503 and not (retry_after or "").isdigit():
            problem = f"503 without a Retry-After in seconds: {retry_after!r}"
        elif status not in (503, 504):
            problem = f"unexpected {status}: {response.text[:200]}"
        return Outcome(status, latency, problem=problem, retry_after=retry_after)

    report = asyncio.run(run_load(server.base_url, send, CLIENTS, 10.0, 100_000))
    print(report.summary())
    shed, timed_out, accepted = report.count(503), report.count(504), report.count(200)
    bad = [o for o in report.outcomes if o.problem]
    p99 = report.latency_ms(99)
    server_ms = [float(ms) for status, ms in LOG_LINE.findall(server.log()) if status == "200"]
    server_p99 = round(float(np.percentile(server_ms, 99)), 1) if server_ms else "n/a"
    figures.record("overload", clients=CLIENTS, rows_per_request=ROWS, deadline_ms=DEADLINE_MS,
                   queue_rows=QUEUE_ROWS, requests=len(report.outcomes), accepted=accepted,
                   shed_503=shed, timed_out_504=timed_out, bad=len(bad),
                   accepted_p50_ms=round(report.latency_ms(50), 1),
                   accepted_p99_ms=round(p99, 1), server_side_accepted_p99_ms=server_p99,
                   max_503_ms=round(report.latency_ms(100, 503), 1))
    assert bad == [], f"{len(bad)} bad answers, first: {bad[:3]}"
    assert shed > 0, f"no request was shed at {CLIENTS} clients: {report.summary()}"
    assert accepted > 0, report.summary()
    assert server.proc.poll() is None, server.log()

    # Load gone: one client gets normal service right away.
    calm = asyncio.run(run_load(server.base_url, send, 1, 3.0, 20))
    assert [o.status for o in calm.outcomes] == [200] * len(calm.outcomes), calm.summary()
    assert httpx.get(f"{server.base_url}/v2/health/ready").status_code == 200
    figures.record("overload", after_calm_p50_ms=round(calm.latency_ms(50), 1))

    shed_p99 = report.latency_ms(99, 503)
    assert p99 < DEADLINE_MS and shed_p99 < DEADLINE_MS, (
        f"p99 of accepted requests {p99:.0f} ms (server-side {server_p99} ms) and of 503s "
        f"{shed_p99:.0f} ms, deadline {DEADLINE_MS} ms: load is shed only after the body is "
        f"read and decoded, so requests queue before the server looks at them"
    )
