"""A bounded async load generator: N concurrent clients on loopback, each sending requests
until a time limit or a request budget is reached, recording every outcome.

Each client calls `send(client, worker_id, seq)`, which performs one request and returns an
`Outcome`; transport errors are caught here and recorded, so a crash shows up as failures
instead of a hung test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import numpy as np


@dataclass
class Outcome:
    """One request: HTTP status (0 = no response), client-side latency, and what was wrong."""

    status: int
    latency_s: float
    started_s: float = 0.0
    problem: str = ""
    version: str = ""
    retry_after: str | None = None
    transport_error: str = ""
    rows: int = 0

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.problem


@dataclass
class LoadReport:
    """All outcomes of one run plus its wall time."""

    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    def count(self, status: int) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def latency_ms(self, q: float, status: int = 200) -> float:
        values = [o.latency_s for o in self.outcomes if o.status == status]
        return float(np.percentile(values, q) * 1000) if values else float("nan")

    def summary(self) -> str:
        statuses: dict[int, int] = {}
        for o in self.outcomes:
            statuses[o.status] = statuses.get(o.status, 0) + 1
        rate = len(self.outcomes) / self.wall_s if self.wall_s else 0.0
        return (
            f"{len(self.outcomes)} requests in {self.wall_s:.1f} s ({rate:.0f}/s), "
            f"statuses {dict(sorted(statuses.items()))}, "
            f"200 latency p50 {self.latency_ms(50):.1f} ms p99 {self.latency_ms(99):.1f} ms"
        )


Send = Callable[[httpx.AsyncClient, int, int], Awaitable[Outcome]]


def assert_loopback(base_url: str) -> None:
    """Load is only ever sent to this machine."""
    host = urlsplit(base_url).hostname
    assert host in {"127.0.0.1", "localhost", "::1"}, f"refusing to send load to {host}"


async def _client_loop(
    client: httpx.AsyncClient,
    send: Send,
    worker: int,
    stop_at: float,
    budget: list[int],
    report: LoadReport,
    stop: asyncio.Event,
) -> None:
    seq = 0
    while time.monotonic() < stop_at and budget[0] > 0 and not stop.is_set():
        budget[0] -= 1
        started = time.monotonic()
        try:
            outcome = await send(client, worker, seq)
        except httpx.TransportError as exc:
            outcome = Outcome(
                status=0,
                latency_s=time.monotonic() - started,
                problem=f"{type(exc).__name__}: {exc}",
                transport_error=type(exc).__name__,
            )
        outcome.started_s = started
        report.outcomes.append(outcome)
        seq += 1


async def run_load(
    base_url: str,
    send: Send,
    clients: int,
    duration_s: float,
    max_requests: int,
    timeout_s: float = 30.0,
    stop: asyncio.Event | None = None,
    keepalive: bool = True,
) -> LoadReport:
    """Run `clients` concurrent loops for at most `duration_s` and `max_requests` in total."""
    assert_loopback(base_url)
    report = LoadReport()
    budget = [max_requests]
    stop = stop or asyncio.Event()
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients if keepalive else 0
    )
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        stop_at = started + duration_s
        await asyncio.gather(
            *(
                _client_loop(client, send, worker, stop_at, budget, report, stop)
                for worker in range(clients)
            )
        )
    report.wall_s = time.monotonic() - started
    return report
