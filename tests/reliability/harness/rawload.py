"""A lean load generator for overload runs: N keep-alive HTTP/1.1 connections, each sending one
pre-encoded request (bytes built once) in a loop and keeping the raw answers for later checks.

Why not `load.py` (httpx): on 2 shared cores, httpx's per-request Python work (building the
request, h11 state machine, header objects, decoding) for 128 concurrent clients starved the
generator itself, so its latencies measured its own backlog as much as the server's. Here a
request costs one write and two reads on an asyncio stream; parsing and checking the answers
happens after the run. Only Content-Length framing is read (all the service ever sends for
these routes); anything else is recorded as a problem, never guessed at.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tests.reliability.harness.load import assert_loopback


@dataclass(slots=True)
class RawOutcome:
    """One request: status (0 = no answer), send/answer times (monotonic), raw body, problem."""

    status: int
    sent_s: float
    answered_s: float
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    problem: str = ""

    @property
    def latency_s(self) -> float:
        return self.answered_s - self.sent_s


@dataclass
class RawReport:
    """Every outcome of one run, the wall time and how often a connection had to be reopened."""

    outcomes: list[RawOutcome] = field(default_factory=list)
    wall_s: float = 0.0
    reconnects: int = 0

    def of(self, status: int) -> list[RawOutcome]:
        return [o for o in self.outcomes if o.status == status]


def http_request(path: str, body: bytes, host: str, content_type: str = "application/json"
                 ) -> bytes:
    """The whole request as bytes: sent unchanged, again and again, on a keep-alive connection."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one Content-Length-framed answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError(f"answer without Content-Length: {head[:300]!r}")
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split(" ", 2)[1]), headers, body


async def _worker(host: str, port: int, request: bytes, stop_at: float,
                  report: RawReport) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < stop_at:
        if writer is None or reader is None:
            reader, writer = await asyncio.open_connection(host, port)
        sent = time.monotonic()
        try:
            writer.write(request)
            status, headers, body = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            report.outcomes.append(RawOutcome(0, sent, time.monotonic(),
                                              problem=f"{type(error).__name__}: {error}"))
            writer.close()
            reader = writer = None
            report.reconnects += 1
            continue
        report.outcomes.append(RawOutcome(status, sent, time.monotonic(), body, headers))
        if headers.get("connection", "").lower() == "close":
            writer.close()
            reader = writer = None
            report.reconnects += 1
    if writer is not None:
        writer.close()


async def run_raw_load(base_url: str, request: bytes, clients: int, duration_s: float
                       ) -> RawReport:
    """`clients` connections sending `request` back to back for `duration_s` seconds."""
    assert_loopback(base_url)
    host, _, port = base_url.removeprefix("http://").partition(":")
    report = RawReport()
    started = time.monotonic()
    await asyncio.gather(*(_worker(host, int(port), request, started + duration_s, report)
                           for _ in range(clients)))
    report.wall_s = time.monotonic() - started
    return report
