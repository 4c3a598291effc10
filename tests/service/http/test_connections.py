"""The HTTP protocol below the app (service/http/connections.py), driven the way uvicorn's event
loop drives it: bytes in through `data_received`, every `transport.write` recorded.

What is checked here is what a socket-level test cannot pin down deterministically: how many
writes one answer takes, and the count of requests parsed but not answered that the batcher
reads to decide whether a request may run inline.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from service.http import body as body_module
from service.http.connections import GuardedProtocol, OneWriteCycle, body_ready, guarded_protocol
from service.models.crowd import Crowd

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """Keeps every write as one entry; closes on request."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


def connect(app: Any, max_body_bytes: int = 8 * 1024 * 1024
            ) -> tuple[GuardedProtocol, RecordingTransport]:
    """A GuardedProtocol (as mlp-serve configures it) on a recording transport."""
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_config=None)
    config.load()
    protocol = guarded_protocol(65536, 10.0, 100, max_body_bytes)(
        config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


def json_app(body: bytes = b'{"ok":true}', headers: list[tuple[bytes, bytes]] | None = None,
             chunks: int = 1) -> Any:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body) * chunks).encode()), *(headers or [])]})
        for index in range(chunks):
            await send({"type": "http.response.body", "body": body,
                        "more_body": index < chunks - 1})
    return app


def on_a_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test (with its fixtures) on a fresh event loop (the protocol needs a
    running one)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@on_a_loop
async def test_an_answer_is_one_write_with_head_and_body() -> None:
    protocol, transport = connect(json_app())
    protocol.data_received(GET)
    await settle()
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head
    assert body == b'{"ok":true}'
    assert isinstance(protocol.cycle, OneWriteCycle)
    assert not transport.closed


@on_a_loop
async def test_keep_alive_answers_stay_one_write_each() -> None:
    protocol, transport = connect(json_app())
    for _ in range(3):
        protocol.data_received(GET)
        await settle()
    assert len(transport.writes) == 3
    assert all(w.endswith(b'{"ok":true}') for w in transport.writes)


@on_a_loop
async def test_a_streamed_answer_sends_its_head_with_the_first_chunk() -> None:
    protocol, transport = connect(json_app(b"abc", chunks=3))
    protocol.data_received(GET)
    await settle()
    assert len(transport.writes) == 3
    assert transport.writes[0].startswith(b"HTTP/1.1 200") and transport.writes[0].endswith(
        b"\r\n\r\nabc")
    assert transport.writes[1:] == [b"abc", b"abc"]


@on_a_loop
async def test_connection_close_writes_then_closes() -> None:
    protocol, transport = connect(json_app(headers=[(b"connection", b"close")]))
    protocol.data_received(GET)
    await settle()
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b'{"ok":true}')
    assert transport.closed


@on_a_loop
async def test_crowd_counts_requests_parsed_until_answered() -> None:
    release = asyncio.Event()
    seen: list[tuple[int, bool]] = []

    async def slow(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        seen.append((Crowd.waiting, Crowd.crowded()))
        await release.wait()
        await json_app()(scope, receive, send)

    before = Crowd.waiting
    first, _ = connect(slow)
    second, second_transport = connect(slow)
    first.data_received(GET)
    second.data_received(GET)  # parsed before either handler ran
    assert Crowd.waiting == before + 2
    await settle()
    assert seen == [(before + 2, True)] * 2
    release.set()
    await settle()
    assert Crowd.waiting == before
    assert not Crowd.crowded()
    # a connection lost mid-request gives its count back
    second.data_received(GET)
    release.clear()
    assert Crowd.waiting == before + 1
    second.connection_lost(None)
    assert Crowd.waiting == before
    assert len(second_transport.writes) == 1


POST_HEAD = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n"


def body_reading_app(seen: list[tuple[bool, bytes]]) -> Any:
    """Notes whether the body was already in when the app began, then reads it as the
    inference endpoints do (service/http/body.py)."""
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        ready = body_ready(receive)
        body = await body_module.read_body(receive, {}, 1000, time.monotonic() + 5.0)
        seen.append((ready, body))
        await json_app()(scope, receive, send)
    return app


@on_a_loop
async def test_a_body_that_came_with_its_head_is_read_without_a_deadline_timer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_timer(when: float) -> Any:
        raise AssertionError("a deadline timer was armed for a body already received")

    monkeypatch.setattr(body_module.asyncio, "timeout_at", no_timer)
    seen: list[tuple[bool, bytes]] = []
    protocol, transport = connect(body_reading_app(seen))
    protocol.data_received(POST_HEAD + b"hello")
    await settle()
    assert seen == [(True, b"hello")]
    assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200")


@on_a_loop
async def test_a_body_still_on_its_way_is_awaited_under_the_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, bytes]] = []
    armed: list[float] = []
    real_timeout_at = asyncio.timeout_at

    def counting(when: float) -> Any:
        armed.append(when)
        return real_timeout_at(when)

    monkeypatch.setattr(body_module.asyncio, "timeout_at", counting)
    protocol, transport = connect(body_reading_app(seen))
    protocol.data_received(POST_HEAD)  # the head alone: the app starts before the body
    await settle()
    assert seen == [] and len(armed) == 1
    protocol.data_received(b"hello")
    await settle()
    assert seen == [(False, b"hello")]
    assert len(transport.writes) == 1


def counting_body_app(messages: list[int], outcome: list[bytes | str], limit: int = 1 << 24,
                      deadline_s: float = 5.0) -> Any:
    """Reads the body as the inference endpoints do, noting the size of every ASGI message the
    read took, and what came of it: the body, or the error's message."""
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        async def counted() -> Any:
            message = await receive()
            messages.append(len(message.get("body", b"")))
            return message
        counted.__self__ = receive.__self__  # type: ignore[attr-defined]  # uvicorn's cycle
        try:
            outcome.append(await body_module.read_body(counted, {}, limit,
                                                       time.monotonic() + deadline_s))
        except Exception as error:
            outcome.append(str(error))
        await json_app()(scope, receive, send)
    return app


def post_head(length: int) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % length


@on_a_loop
async def test_a_body_arriving_in_pieces_reaches_the_reading_app_whole() -> None:
    body = bytes(range(256)) * 1200  # 307,200 bytes, as a 96-row binary request
    messages: list[int] = []
    outcome: list[bytes | str] = []
    protocol, transport = connect(counting_body_app(messages, outcome))
    protocol.data_received(post_head(len(body)) + body[:100_000])  # the head and a first piece
    await settle()
    assert messages == []  # the piece that came with the head waits for the rest too
    for start in range(100_000, len(body) - 50_000, 50_000):
        protocol.data_received(body[start:start + 50_000])
        await settle()
        assert messages == [], "the app was woken for part of the body"
        assert not protocol.flow.read_paused  # no pause/resume round per piece
    protocol.data_received(body[len(body) - 7_200:])
    await settle()
    assert messages == [len(body)]
    assert outcome == [body]
    assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200")


@on_a_loop
async def test_a_held_body_over_the_limit_is_refused_before_the_rest_arrives() -> None:
    messages: list[int] = []
    outcome: list[bytes | str] = []
    protocol, transport = connect(counting_body_app(messages, outcome, limit=100_000),
                                  max_body_bytes=100_000)
    protocol.data_received(post_head(1_000_000) + b"x" * 1000)
    await settle()
    protocol.data_received(b"x" * 60_000)
    await settle()
    assert outcome == []
    protocol.data_received(b"x" * 60_000)  # 121,000 bytes: past the limit
    await settle()
    assert outcome == ["request body is more than 100000 bytes, over the limit of 100000 bytes "
                       "(MLP_MAX_BODY_BYTES); send fewer rows per request or use the binary "
                       "tensor format"]
    assert len(transport.writes) == 1  # answered while the rest is still on its way


@on_a_loop
async def test_a_body_deadline_counts_the_bytes_held_for_the_app() -> None:
    messages: list[int] = []
    outcome: list[bytes | str] = []
    protocol, _ = connect(counting_body_app(messages, outcome, deadline_s=0.2))
    protocol.data_received(post_head(100_000) + b"x" * 100)
    await settle()
    protocol.data_received(b"x" * 5_000)
    await asyncio.sleep(0.4)
    assert len(outcome) == 1 and "(received 5100 bytes;" in str(outcome[0]), outcome


@on_a_loop
async def test_a_body_the_app_is_not_reading_is_left_to_backpressure() -> None:
    """A request waiting on something else (an app that has not asked for its body) keeps
    uvicorn's flow control: past 64 kB the socket is no longer read, nothing is held."""
    release = asyncio.Event()

    async def waiting(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await release.wait()
        await json_app()(scope, receive, send)

    protocol, _ = connect(waiting)
    protocol.data_received(post_head(1_000_000) + b"x" * 100_000)
    await settle()
    assert protocol.flow.read_paused
    assert getattr(protocol.cycle, "held", None) is None
    release.set()
    await settle()


def test_body_ready_is_false_for_a_receive_that_is_not_uvicorns() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    assert body_ready(receive) is False


@pytest.fixture(autouse=True)
def _no_leak() -> Any:
    """Every test leaves the process-wide count where it found it."""
    before = Crowd.waiting
    yield
    assert Crowd.waiting == before
