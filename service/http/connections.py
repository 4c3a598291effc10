"""Limits on what one TCP connection may hold, below the ASGI app: uvicorn's httptools protocol
with a header size cap, a header read deadline, an idle deadline from the moment a connection
opens, a strict request line, and a cap on open connections per worker.

Why here: none of this reaches the app. Without it one client could send a 128 MB header
(parsed in quadratic time by httptools, stalling every request on the worker), trickle header
lines forever (slowloris), or open sockets that never send a byte until the worker runs out of
file descriptors; uvicorn's keep-alive timeout only starts after a first response.

The protocol also shapes what the app sees: an answer leaves in one write (`OneWriteCycle`),
a body still on its way reaches a reading app in one message (`wait_for_whole_body`), and with
several workers a new connection may go to a less busy one (`service/http/spread.py`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from service.http.spread import Spread
from service.models.crowd import Crowd

logger = logging.getLogger("mlp_serve")
# method SP request-target SP HTTP-version, exactly one space each (RFC 9112 section 3); llhttp
# skips a second space, so `GET /v2/models/x/versions/1  HTTP/1.1` would be served as version 1.
REQUEST_LINE = re.compile(rb"[A-Z]+ [^\s]+ HTTP/\d\.\d\r?")
MAX_REQUEST_LINE = 8192
RESERVED_FDS = 64  # descriptors kept for model files, pipes, logs and the listener


def _plain_answer(status: str, message: str) -> bytes:
    body = b'{"error":"' + message.encode() + b'"}'
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def _too_large(limit: int) -> Any:
    """An ASGI app answering every request 431 and closing the connection."""
    body = (b'{"error":"request headers are over ' + str(limit).encode()
            + b' bytes (MLP_MAX_HEADER_BYTES)"}')

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 431, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    return app


class _Held:
    """Stands in for the transport while uvicorn's `send` runs: keeps what it writes."""

    __slots__ = ("chunks", "closed")

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def close(self) -> None:
        self.closed = True


def body_ready(receive: Any) -> bool:
    """True when `receive` is uvicorn's and already holds the next request message (a body that
    came in with its head, as small ones do), so awaiting it cannot wait: the caller need not
    arm a deadline timer around it (see service/http/body.py)."""
    cycle = getattr(receive, "__self__", None)
    return isinstance(cycle, RequestResponseCycle) and cycle.message_event.is_set()


def wait_for_whole_body(receive: Any) -> None:
    """Ask uvicorn's protocol to hand this request's body to `receive` in one message once it
    is whole (or past max_body_bytes), when it is still on its way; a body already whole (a
    small one comes with its head) is left as it is.

    uvicorn wakes the app for each piece the socket yields and stops reading past 64 kB until
    the app asks again: an 800 kB body (256 rows of binary FP32) took about five rounds of
    waking the app, pausing and resuming the socket, and two copies of each piece (into
    uvicorn's bytearray, out of it), then a join. Held, the body is joined once. Per request at
    one client, one worker: epoll waits 7.5 -> 5.6, io_uring submissions (the pauses and
    resumes) 6.5 -> 1.9 (strace -c); instructions 18.87 -> 18.24 million for 256 binary rows,
    57.55 -> 55.44 million for 256 JSON rows (callgrind; bench/README.md). Only a request whose
    app reads its body holds it, so a request not reading its body (waiting for admission, or
    answered without it) keeps uvicorn's backpressure: past 64 kB the socket is not read.
    """
    cycle = getattr(receive, "__self__", None)
    if not isinstance(cycle, OneWriteCycle) or not cycle.more_body or cycle.held is not None \
            or cycle.disconnected or cycle.response_complete:
        return
    cycle.held = [cycle.body] if cycle.body else []  # uvicorn's bytearray, not copied: the
    cycle.held_bytes = len(cycle.body)                # join takes it as it is
    cycle.body = bytearray()
    cycle.message_event.clear()


def bytes_held(receive: Any) -> int:
    """Body bytes received for `receive`'s request and held until the body is whole: a
    deadline's message counts them as received."""
    cycle = getattr(receive, "__self__", None)
    return cycle.held_bytes if isinstance(cycle, OneWriteCycle) else 0


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request cycle, but the status line and headers go out with the first body chunk.

    uvicorn writes them with one `transport.write` each: two send() syscalls per answer, and the
    client wakes up for a head it cannot use yet. Measured with wrk, 1-row JSON, 2 workers
    (bench/README.md): `RequestResponseCycle.send` was a third of a worker's CPU at one client.
    uvicorn's own `send` still builds and checks everything; the writes are only held.
    """

    _head: list[bytes] | None = None
    held: list[bytes | bytearray] | None = None  # the body for the app (wait_for_whole_body)
    held_bytes = 0

    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()  # before the swap: super().send must not wait with it
        starting = message["type"] == "http.response.start"
        if not starting and self._head is None:
            await super().send(message)
            return
        transport, held = self.transport, _Held(self._head or [])
        self.transport = held  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
        if starting and not held.closed:
            self._head = held.chunks
            return
        self._head = None
        if held.chunks:
            transport.write(b"".join(held.chunks))
        if held.closed:
            transport.close()


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus per-connection limits (set by `guarded_protocol`)."""

    max_header_bytes = 65536
    header_timeout_s = 10.0
    max_connections = 1000
    max_body_bytes = 8 * 1024 * 1024
    spread: Spread | None = None  # with --workers: connections evened out over the workers

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handed_in = False  # handed over by another worker, which counted it for us
        self._left = False  # handed over to another worker: nothing of it is ours
        self._head_bytes = 0  # bytes received since the current request head began
        self._in_head = True  # between requests or inside a head (not in a body)
        self._line: bytes | None = b""  # the request line so far; None once checked
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_since = time.monotonic()
        self._open = 0  # this connection's requests in Crowd.waiting (pipelining: several)

    def _opened(self) -> None:
        self._open += 1
        Crowd.waiting += 1

    def _closed(self, count: int) -> None:
        self._open -= count
        Crowd.waiting -= count

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        spread = self.spread
        if spread is not None and not self.handed_in:
            if spread.pass_on(transport):
                self._left = True
                return
            spread.opened()
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._make_room()
        # The first request must arrive within the header deadline of connecting (uvicorn arms
        # its keep-alive timer only after a response, so a silent socket stayed open forever).
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _make_room(self) -> None:
        """Over the cap: close the connection idle the longest, or this one if none is idle."""
        idle = [c for c in self.connections if isinstance(c, GuardedProtocol) and c is not self
                and c._is_idle()]
        victim = min(idle, key=lambda c: c._idle_since) if idle else self
        if victim is self:
            logger.warning("connection limit of %d reached with no idle connection to close; "
                           "refusing a new one (MLP_MAX_CONNECTIONS)", self.max_connections)
        victim.transport.close()

    def _is_idle(self) -> bool:
        """No request in progress: nothing received since the last answer (or since opening)."""
        return self._in_head and self._head_bytes == 0 and (
            self.cycle is None or self.cycle.response_complete)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._left:
            return
        if self.spread is not None:
            self.spread.closed()
        self._closed(self._open)
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._head_bytes == 0 and self._head_timer is None:
                self._head_timer = self.loop.call_later(self.header_timeout_s,
                                                        self._head_too_slow)
            self._head_bytes += len(data)
            if self._line is not None and not self._check_request_line(data):
                return
        super().data_received(data)
        # Checked after feeding: a chunk that completed the head (and carries a body) is fine.
        if self._in_head and self._head_bytes > self.max_header_bytes and \
                not self.transport.is_closing():
            self._refuse("431 Request Header Fields Too Large",
                         f"request headers are over {self.max_header_bytes} bytes "
                         "(MLP_MAX_HEADER_BYTES)")

    def _check_request_line(self, data: bytes) -> bool:
        """Collect the request line; refuse it with 400 unless it is exactly well-formed."""
        assert self._line is not None
        self._line += data[: MAX_REQUEST_LINE + 2 - len(self._line)]
        end = self._line.find(b"\n")
        if end < 0:
            if len(self._line) <= MAX_REQUEST_LINE:
                return True
            self._refuse("414 URI Too Long", f"request line is over {MAX_REQUEST_LINE} bytes")
            return False
        line = self._line[:end]
        self._line = None
        if REQUEST_LINE.fullmatch(line) or line in (b"", b"\r"):
            return True
        self._refuse("400 Bad Request", "malformed request line: expected 'METHOD /path "
                     "HTTP/1.1' with single spaces and no whitespace in the path")
        return False

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size <= self.max_header_bytes:
            super().on_headers_complete()
            self.cycle.__class__ = OneWriteCycle  # its task has not run yet: every send is ours
            self._opened()
            return
        # The whole head came in one read: answer 431 through uvicorn's own request cycle (so
        # the parser's later callbacks find the state they expect), then close.
        app, self.app = self.app, _too_large(self.max_header_bytes)
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not isinstance(cycle, OneWriteCycle) or cycle.held is None or cycle.response_complete:
            super().on_body(body)
            return
        cycle.held.append(body)
        cycle.held_bytes += len(body)
        if cycle.held_bytes > self.max_body_bytes:  # the app refuses it: let it know now
            self._release_body(cycle)
            self.flow.pause_reading()  # as uvicorn does past its buffer limit

    @staticmethod
    def _release_body(cycle: OneWriteCycle) -> None:
        """Hand the held chunks to the app: one bytes object, which uvicorn's receive passes on
        as it is (it copies a bytearray)."""
        held, cycle.held, cycle.held_bytes = cycle.held or [], None, 0
        whole = held[0] if len(held) == 1 else b"".join(held)
        if cycle.body:
            cycle.body += whole
        else:
            cycle.body = whole  # type: ignore[assignment]
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if isinstance(cycle, OneWriteCycle) and cycle.held is not None:
            self._release_body(cycle)
        super().on_message_complete()
        self._cancel_head_timer()
        self._in_head, self._head_bytes, self._line = True, 0, None

    def on_response_complete(self) -> None:
        if self._open:
            self._closed(1)
        self._idle_since = time.monotonic()
        if self._in_head and self._head_bytes == 0:
            self._line = b""
        super().on_response_complete()
        if not self._in_head and self._head_timer is None:
            # Answered before its body ended (413, 504): the rest is read and discarded, but
            # only for header_timeout_s more, or a client could trickle it forever.
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._body_too_slow)

    def _body_too_slow(self) -> None:
        self._head_timer = None
        if not self._in_head:
            self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        """The head did not arrive in time: 408 if a request began, else just close."""
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self._head_bytes:
            self._refuse("408 Request Timeout", f"request headers took over "
                         f"{self.header_timeout_s:g} s (MLP_HEADER_TIMEOUT_S)")
        elif self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    def _refuse(self, status: str, message: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(_plain_answer(status, message))
            self.transport.close()


def guarded_protocol(max_header_bytes: int, header_timeout_s: float, max_connections: int,
                     max_body_bytes: int, spread: Spread | None = None
                     ) -> type[GuardedProtocol]:
    """The protocol class uvicorn instantiates per connection, with these limits (and a
    worker's `Spread`); the connection cap is lowered to fit the file descriptor limit."""
    cap = min(max_connections, _fd_room())
    if cap < max_connections:
        logger.warning("MLP_MAX_CONNECTIONS %d is above what the open-file limit allows; using "
                       "%d (raise `ulimit -n` to allow more)", max_connections, cap)
    return type("GuardedProtocol", (GuardedProtocol,), {
        "max_header_bytes": max_header_bytes, "header_timeout_s": header_timeout_s,
        "max_connections": cap, "spread": spread, "max_body_bytes": max_body_bytes,
    })


def _fd_room() -> int:
    """Open-file limit minus what the process needs besides client sockets."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not Linux
        return 1 << 30
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, soft - RESERVED_FDS) if soft != resource.RLIM_INFINITY else 1 << 30
