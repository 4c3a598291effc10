"""Connections handed between workers (service/http/spread.py), two workers' halves in one
process: real TCP connections, real handover sockets, counts in real shared memory."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from service.http.spread import Spread, SpreadPlan


class AcceptedTransport(asyncio.Transport):
    """What a worker's event loop holds right after accepting: the socket, nothing read."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def abort(self) -> None:
        self.aborted = True
        self.sock.close()


@pytest.fixture
def pair() -> Iterator[tuple[Spread, Spread]]:
    plan = SpreadPlan.create(multiprocessing.get_context("spawn"), 2)
    spreads = (Spread(plan, 0), Spread(plan, 1))
    yield spreads
    for spread in spreads:
        spread.sender.close()
        spread.receiver.close()


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client end, accepted server end) of a real loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    yield client, accepted
    client.close()
    accepted.close()


async def handed(spread: Spread) -> socket.socket:
    """Start `spread` taking connections; the first one it takes."""
    loop = asyncio.get_running_loop()
    taken: asyncio.Future[socket.socket] = loop.create_future()
    spread.start(loop, taken.set_result)
    try:
        return await asyncio.wait_for(taken, 5)
    finally:
        spread.stop(loop)


def test_a_busier_worker_hands_the_connection_over_before_reading_it(
    pair: tuple[Spread, Spread], connection: tuple[socket.socket, socket.socket],
) -> None:
    busy, idle = pair
    client, accepted = connection
    busy.opened()  # worker 0 already holds one connection, worker 1 none
    idle.plan.open[1] = 1
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")  # the request is waiting when it is handed
    transport = AcceptedTransport(accepted)

    assert busy.pass_on(transport)
    assert transport.aborted  # worker 0's copy is closed
    assert list(busy.loads()) == [1, 1]  # counted for worker 1 from the moment it left

    async def take() -> None:
        received = await handed(idle)
        with received:
            received.setblocking(True)
            assert received.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
            received.sendall(b"answered by worker 1")
        assert client.recv(100) == b"answered by worker 1"

    asyncio.run(take())
    idle.closed()  # the received connection closes on worker 1
    assert list(busy.loads()) == [1, 0]


def test_equal_loads_keep_the_connection(
    pair: tuple[Spread, Spread], connection: tuple[socket.socket, socket.socket],
) -> None:
    first, second = pair
    first.opened()
    second.opened()
    second.plan.open[1] = 1
    transport = AcceptedTransport(connection[1])
    assert not first.pass_on(transport)
    assert not transport.aborted
    first.opened()
    assert list(first.loads()) == [2, 1]


def test_no_handover_to_a_worker_that_is_not_open_or_gone(
    pair: tuple[Spread, Spread], connection: tuple[socket.socket, socket.socket],
) -> None:
    busy, other = pair
    busy.opened()
    busy.opened()
    transport = AcceptedTransport(connection[1])
    assert not busy.pass_on(transport)  # worker 1 has not started (or is draining)
    other.plan.open[1] = 1
    other.receiver.close()  # ... or it exited with its door still marked open
    assert not busy.pass_on(transport)
    assert not transport.aborted
    assert list(busy.loads()) == [2, 0]


def test_a_single_worker_keeps_everything() -> None:
    plan = SpreadPlan.create(multiprocessing.get_context("spawn"), 1)
    alone = Spread(plan, 0)
    alone.plan.open[0] = 1
    alone.opened()
    try:
        with socket.socket() as sock:
            assert not alone.pass_on(AcceptedTransport(sock))
    finally:
        alone.sender.close()
        alone.receiver.close()


def test_a_handover_that_lost_its_socket_is_uncounted(pair: tuple[Spread, Spread],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    sender, receiver = pair
    sender.row[1] += 1  # counted for worker 1 when sent, as pass_on does
    sender.sender.sendto(b"c", receiver.receiver.getsockname())  # ... but no socket arrives

    async def take() -> None:
        loop = asyncio.get_running_loop()
        receiver.start(loop, lambda conn: conn.close())
        try:
            while list(receiver.loads()) != [0, 0]:
                await asyncio.sleep(0.01)
        finally:
            receiver.stop(loop)

    asyncio.run(asyncio.wait_for(take(), 5))
    assert "lost on the way" in caplog.text
