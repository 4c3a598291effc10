"""Overload: a low queue bound and a short deadline, then far more load than the server can take.

One 10 s overload run (module fixture), two verdicts. Proves: the server sheds load with 503 +
Retry-After, never answers wrongly, never crashes, keeps keep-alive connections usable, and
serves normally again as soon as the load drops; and (second test) that nothing queues without
bound: no answered request waited in the queue past the deadline (the server's own histogram),
and the p99 of accepted requests and of the 503s stays near it.

How latency is measured, and why two clocks:
- The load generator (`rawload.py`) sends one pre-encoded request (bytes built once) on 128
  keep-alive connections, back to back, with no back-off on 503 (the worst case), and checks the
  answers only after the run. The first version used httpx: at 128 clients its own per-request
  CPU capped it at ~75 requests/s and its p99 (7.4 s against a server-side 135 ms, same fixed
  server) measured its own backlog, not the server's.
- Server clock: the service logs each request's time from the moment the app received it to the
  end of its answer -- what the deadline is defined on. p99 of 200s and of 503s <
  DEADLINE_MS + SERVER_ALLOWANCE_MS (the work after the model call; see the test's doc), and
  every queue wait (mlp_queue_wait_seconds) < DEADLINE_MS exactly.
- Client clock: also counts the loopback, the kernel's socket buffers (where an unbounded queue
  would hide) and the generator's own scheduling, on the same 2 cores as the server and other
  jobs. So its bound is DEADLINE_MS + CLIENT_ALLOWANCE_MS (500 ms): tight enough that the old
  behaviour (seconds of queueing in socket buffers) fails it, loose enough that a busy shared
  machine does not. Measured with the fix: client p99 of 200s 400-ish ms, of 503s ~100 ms.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.reliability.conftest import API_KEY, MODEL, StartServer
from tests.reliability.harness import figures
from tests.reliability.harness.load import LoadReport, Outcome, run_load
from tests.reliability.harness.rawload import (
    RawOutcome,
    RawReport,
    http_request,
    read_response,
    run_raw_load,
)
from tests.reliability.harness.server import ServerProcess, start_server
from tests.reliability.harness.v2 import (
    JSON,
    Reference,
    compare,
    error_shape_problem,
    read_answer,
    v2_body,
)
from tests.service.model_repo import write_model

# The server's one-line request log: "POST /v2/models/m/infer 200 12.3ms ..." (for figures only).
LOG_LINE = re.compile(r"POST /v2/models/\S+/infer (\d{3}) ([\d.]+)ms")
DEADLINE_MS = 500
QUEUE_ROWS = 128
CLIENTS = 128
ROWS = 64
SECONDS = 10.0
CLIENT_ALLOWANCE_MS = 500
SERVER_ALLOWANCE_MS = 500


@dataclass
class Overload:
    """What one overload run produced."""

    server: ServerProcess
    report: RawReport
    calm: LoadReport
    ready_after: int
    server_ms: dict[int, list[float]]
    problems: list[str]
    queue_wait: dict[str, float]  # mlp_queue_wait_seconds after the run: bucket "le" -> count


def client_p99_ms(report: RawReport, status: int) -> float:
    """p99 latency seen by the load generator for answers with `status` (nan if none)."""
    values = [o.latency_s for o in report.of(status)]
    return float(np.percentile(values, 99) * 1000) if values else float("nan")


def server_p99_ms(overload: Overload, status: int) -> float:
    """p99 of the server's own request-log times (from arrival to the end of the answer)."""
    values = overload.server_ms.get(status, [])
    return float(np.percentile(values, 99)) if values else float("nan")


def queue_wait_buckets(base_url: str) -> dict[str, float]:
    """The server's own histogram of time spent in the batcher queue: {le: cumulative count}."""
    text = httpx.get(f"{base_url}/metrics").text
    return {le: float(count) for le, count in re.findall(
        r'mlp_queue_wait_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)', text)}


def check_outcome(outcome: RawOutcome, expected: tuple[np.ndarray, np.ndarray]) -> str:
    """'' when one raw answer is right: a correct 200, or a well-formed 503 (Retry-After) / 504."""
    if outcome.problem:
        return outcome.problem
    if outcome.status == 200:
        return compare(expected, read_answer(outcome.body))
    problem = error_shape_problem(outcome.status, outcome.body)
    retry_after = outcome.headers.get("retry-after")
    if outcome.status == 503 and not (retry_after or "").isdigit():
        problem = f"503 without a Retry-After in seconds: {retry_after!r}"
    elif outcome.status not in (503, 504):
        problem = f"unexpected {outcome.status}: {outcome.body[:200]!r}"
    elif "x-request-id" not in outcome.headers:
        problem = f"{outcome.status} without X-Request-ID"
    return problem


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
        request = http_request(f"/v2/models/{MODEL}/infer", body, f"127.0.0.1:{server.port}")
        expected = Reference(root / "models" / MODEL / "1" / "model.onnx").run(rows)

        async def send(client: httpx.AsyncClient, worker: int, seq: int) -> Outcome:
            started = time.monotonic()
            response = await client.post(f"/v2/models/{MODEL}/infer", content=body,
                                         headers=JSON)
            problem = compare(expected, read_answer(response.content)) \
                if response.status_code == 200 else response.text[:200]
            return Outcome(response.status_code, time.monotonic() - started, problem=problem)

        report = asyncio.run(run_raw_load(server.base_url, request, CLIENTS, SECONDS))
        alive = server.proc.poll() is None
        calm = asyncio.run(run_load(server.base_url, send, 1, 3.0, 20)) if alive else LoadReport()
        ready = httpx.get(f"{server.base_url}/v2/health/ready").status_code if alive else 0
        queue_wait = queue_wait_buckets(server.base_url) if alive else {}
        server_ms: dict[int, list[float]] = {}
        for code, ms in LOG_LINE.findall(server.log()):
            server_ms.setdefault(int(code), []).append(float(ms))
        problems = [p for p in (check_outcome(o, expected) for o in report.outcomes) if p]
        result = Overload(server, report, calm, ready, server_ms, problems, queue_wait)
        statuses = {code: len(report.of(code)) for code in sorted({o.status
                                                                   for o in report.outcomes})}
        figures.record(
            "overload", clients=CLIENTS, rows_per_request=ROWS, deadline_ms=DEADLINE_MS,
            queue_rows=QUEUE_ROWS, seconds=SECONDS, requests=len(report.outcomes),
            statuses=statuses, bad=len(problems), reconnects=report.reconnects,
            client_p50_200_ms=round(float(np.percentile(
                [o.latency_s for o in report.of(200)] or [np.nan], 50)) * 1000, 1),
            client_p99_200_ms=round(client_p99_ms(report, 200), 1),
            client_p99_503_ms=round(client_p99_ms(report, 503), 1),
            server_p99_200_ms=round(server_p99_ms(result, 200), 1),
            server_p99_503_ms=round(server_p99_ms(result, 503), 1),
            after_calm_p50_ms=round(calm.latency_ms(50), 1))
        yield result
    finally:
        server.stop()


def test_overload_sheds_with_503_and_recovers(overload: Overload) -> None:
    report = overload.report
    assert overload.problems == [], (
        f"{len(overload.problems)} bad answers, first: {overload.problems[:3]}")
    assert report.of(503), f"nothing was shed at {CLIENTS} clients"
    assert report.of(200), "nothing was answered"
    # 503s sent before the body was read leave the keep-alive connection usable.
    assert report.reconnects == 0, f"{report.reconnects} connections had to be reopened"
    assert overload.server.proc.poll() is None, overload.server.log()
    # Load gone: one client gets normal service right away.
    assert overload.calm.outcomes, "no request after the overload"
    assert [o.status for o in overload.calm.outcomes] == [200] * len(overload.calm.outcomes)
    assert overload.ready_after == 200


def test_overload_never_queues_past_the_deadline(overload: Overload) -> None:
    """Nothing waits in the queue past the deadline, by the server's own clock; and the whole
    time of a request (server log, client) stays near the deadline.

    Why these bounds (a busy shared machine must not break them, a broken server must):
    - Queue time (mlp_queue_wait_seconds, queue entry to model call) is compared with the
      deadline exactly: the batcher only starts a request's model call before its deadline,
      counted from arrival (earlier than queue entry), so every answered request waited
      < DEADLINE_MS whatever the load -- the check and the measure use the same clock. A batcher
      that ignored the deadline, or an unbounded queue, puts waits of seconds here.
    - Server log time (arrival to the end of the answer) adds to that the model call, the JSON
      encoding and the write, which run on an event loop sharing 2 cores with 128 clients and
      other jobs: at load 15, 597 ms was measured for a correct server. So its bound is
      DEADLINE_MS + SERVER_ALLOWANCE_MS; queueing without bound (the behaviour this guards
      against) means seconds, far past it.
    - Client time: DEADLINE_MS + CLIENT_ALLOWANCE_MS (see the module doc).
    """
    waits = overload.queue_wait
    assert waits.get("+Inf", 0) > 0, f"no queue wait was recorded: {waits}"
    within = waits[str(DEADLINE_MS / 1000)]
    assert within == waits["+Inf"], (
        f"{waits['+Inf'] - within:.0f} of {waits['+Inf']:.0f} answered requests waited in the "
        f"queue {DEADLINE_MS} ms or more: {waits}")
    server_200, server_503 = server_p99_ms(overload, 200), server_p99_ms(overload, 503)
    client_200 = client_p99_ms(overload.report, 200)
    client_503 = client_p99_ms(overload.report, 503)
    figures_text = (f"p99 of 200s {server_200:.0f} ms by the server log, {client_200:.0f} ms by "
                    f"the client; of 503s {server_503:.0f} / {client_503:.0f} ms")
    server_limit = DEADLINE_MS + SERVER_ALLOWANCE_MS
    assert server_200 < server_limit and server_503 < server_limit, (
        f"{figures_text}: over {server_limit} ms (deadline + allowance) on the server's clock")
    limit = DEADLINE_MS + CLIENT_ALLOWANCE_MS
    assert client_200 < limit and client_503 < limit, (
        f"{figures_text}: over {limit} ms (deadline + allowance) at the client")


def test_deadline_counts_from_arrival_so_a_slow_body_gets_504(
        serve: StartServer, model_repo: Path) -> None:
    """A body that takes longer than the deadline to arrive is refused with 504, not decoded
    and answered late; the keep-alive connection then serves the next request normally."""
    server = serve(model_repo, request_timeout_ms=300)
    rows = np.random.default_rng(8).integers(0, 256, size=(2, 784))
    request = http_request(f"/v2/models/{MODEL}/infer", v2_body(rows), f"127.0.0.1:{server.port}")
    half = len(request) // 2

    async def slow_then_normal() -> list[tuple[int, dict[str, str], bytes, float]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        answers = []
        for pause_s in (0.6, 0.0):
            started = time.monotonic()
            writer.write(request[:half])
            await writer.drain()
            await asyncio.sleep(pause_s)
            writer.write(request[half:])
            answers.append((*await read_response(reader), time.monotonic() - started))
        writer.close()
        return answers

    (status, headers, body, waited_s), (next_status, _, next_body, _) = asyncio.run(
        slow_then_normal())
    assert status == 504, body
    # answered when the deadline passed during the upload, not after it
    assert re.fullmatch(rb'{"error":"the request body was not complete within the request '
                        rb'deadline \(received \d+ bytes; MLP_REQUEST_TIMEOUT_MS\)"}', body), body
    assert "x-request-id" in headers
    assert waited_s < 2.0
    assert next_status == 200, next_body
    assert compare(Reference(model_repo / MODEL / "1" / "model.onnx").run(rows),
                   read_answer(next_body)) == ""
