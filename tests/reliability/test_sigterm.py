"""SIGTERM under load: 32 clients, readiness polled every 10 ms, then SIGTERM.

The clients behave like a load balancer's pool: they stop sending new requests once readiness
goes false (the server keeps its listener open for MLP_SHUTDOWN_DELAY_S for exactly that).
Proves: readiness turns false first, every request sent gets a full answer (200 with the right
result, or 503 + Retry-After for ones arriving while draining) -- none is cut off -- requests in
flight at SIGTERM complete, and the process exits 0 within MLP_SHUTDOWN_GRACE_S."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from tests.reliability.conftest import MODEL, StartServer
from tests.reliability.harness import figures
from tests.reliability.harness.load import LoadReport, Outcome, run_load
from tests.reliability.harness.v2 import (
    JSON,
    Reference,
    compare,
    error_shape_problem,
    read_answer,
    v2_body,
)

CLIENTS = 32
GRACE_S = 8.0
DELAY_S = 1.5


def test_sigterm_under_load_answers_everything_and_exits_0(
    serve: StartServer, model_repo: Path
) -> None:
    server = serve(model_repo, shutdown_grace_s=GRACE_S, shutdown_delay_s=DELAY_S)
    rng = np.random.default_rng(5)
    pool = [rng.integers(0, 256, size=(n, 784)) for n in (1, 8, 32, 64)]
    bodies = [v2_body(rows) for rows in pool]
    reference = Reference(model_repo / MODEL / "1" / "model.onnx")
    expected = [reference.run(rows) for rows in pool]
    events: dict[str, float] = {}
    exited = threading.Event()

    def wait_exit() -> None:
        server.proc.wait()
        events["exit"] = time.monotonic()
        exited.set()

    async def send(client: httpx.AsyncClient, worker: int, seq: int) -> Outcome:
        index = (worker + seq) % len(bodies)
        started = time.monotonic()
        response = await client.post(f"/v2/models/{MODEL}/infer", content=bodies[index],
                                     headers=JSON)
        latency, status = time.monotonic() - started, response.status_code
        if status == 200:
            return Outcome(200, latency, problem=compare(expected[index],
                                                         read_answer(response.content)))
        problem = error_shape_problem(status, response.content)
        if status != 503 or not response.headers.get("retry-after", "").isdigit():
            problem = f"{status} {dict(response.headers)} {response.text[:200]}"
        return Outcome(status, latency, problem=problem)

    async def scenario() -> LoadReport:
        not_ready = asyncio.Event()

        async def poll_ready() -> None:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as client:
                while not exited.is_set():
                    try:
                        status = (await client.get("/v2/health/ready")).status_code
                        if status != 200 and "not_ready" not in events:
                            events["not_ready"] = time.monotonic()
                            not_ready.set()
                    except httpx.TransportError:
                        events.setdefault("unreachable", time.monotonic())
                    await asyncio.sleep(0.01)

        async def terminate() -> None:
            await asyncio.sleep(3.0)
            events["sigterm"] = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)

        poller = asyncio.create_task(poll_ready())
        killer = asyncio.create_task(terminate())
        report = await run_load(server.base_url, send, CLIENTS, 30.0, 1_000_000, stop=not_ready)
        await killer
        await asyncio.to_thread(exited.wait, GRACE_S + 10)
        await poller
        return report

    threading.Thread(target=wait_exit, daemon=True).start()
    report = asyncio.run(scenario())
    failures = report.failures()
    refused_503 = [o for o in failures if o.status == 503 and not o.problem]
    failures = [o for o in failures if o not in refused_503]
    in_flight_done = [o for o in report.outcomes if o.status == 200
                      and o.started_s < events["sigterm"] < o.started_s + o.latency_s]
    exit_after = events["exit"] - events["sigterm"]
    figures.record("sigterm", clients=CLIENTS, requests=len(report.outcomes),
                   failures=len(failures), answered_503=len(refused_503),
                   in_flight_at_sigterm_answered=len(in_flight_done),
                   not_ready_after_ms=round((events["not_ready"] - events["sigterm"]) * 1000, 1),
                   exit_after_s=round(exit_after, 2), exit_code=server.proc.returncode,
                   grace_s=GRACE_S)
    print(report.summary())
    assert failures == [], f"{len(failures)} requests not fully answered: {failures[:3]}"
    assert in_flight_done, "no request was in flight at SIGTERM; the test proved nothing"
    assert events["sigterm"] < events["not_ready"] < events["exit"], events
    assert events.get("unreachable", events["exit"]) > events["not_ready"], events
    assert server.proc.returncode == 0, server.log()
    assert exit_after <= GRACE_S, f"exited {exit_after:.1f} s after SIGTERM (grace {GRACE_S} s)"
