"""Even out the workers' connections: a worker that holds more than another hands a new
connection over, before reading a byte from it.

Why: SO_REUSEPORT places each new connection on a worker by a hash of its addresses, and a
keep-alive connection stays where it landed. With few connections that is often lopsided: two
connections share one worker half the time, and one CPU then serves both while the other idles.
`wrk -t1 -c2`, 3 s runs alternating with the code before this module, both two-worker
defaults: before, both connections landed on one worker in 5 of 10 runs (1,168-1,619
requests/s, against 2,326-2,544 when split); with it, 1/1 in every run (2,437-2,836). With
64 clients the kernel's splits (21/43 to 32/32) cost nothing measurable: a busier worker
batches more (bench/README.md).

How: every worker counts its connections in memory the supervisor shares with all of them. A
worker that accepts a connection while it holds more than the least-loaded open worker sends
the socket there (SCM_RIGHTS over a Unix datagram socket) and closes its own copy; the receiver
serves it as if it had accepted it. Nothing was read yet, so the request waits in the socket's
buffer. A connection moves at most once. If the handover cannot be sent at once (the
receiver's queue is full), the worker keeps the connection.

The counts are a matrix with one row per worker, each row written by its worker only, so no
update is lost without a lock: cell (w, j) counts what w handed to j; (w, w) what w kept or
received, minus what it closed. A worker's load is the sum of its column. Deciding costs
3.4 µs per accepted connection (timeit, two workers; 13 µs with numpy for every step).
"""

from __future__ import annotations

import array
import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from typing import Any

import numpy as np

logger = logging.getLogger("mlp_serve")
HANDOVER = b"c"  # the datagram's byte: the socket travels in its ancillary data


@dataclass
class SpreadPlan:
    """What the supervisor makes once and gives every worker: a name for the fleet's
    handover sockets, the shared counts and each worker's open flag."""

    token: str
    workers: int
    counts: Any  # RawArray of int64, workers x workers (see the module doc)
    open: Any  # RawArray of int8: 1 while the worker takes handed connections

    @classmethod
    def create(cls, context: SpawnContext, workers: int) -> SpreadPlan:
        return cls(os.urandom(8).hex(), workers, context.RawArray("q", workers * workers),
                   context.RawArray("b", workers))


def address(token: str, index: int) -> bytes:
    """Worker `index`'s handover socket: Linux's abstract namespace (no file to clean up),
    named by the fleet's random token so fleets sharing a network namespace never meet."""
    return f"\0mlp-serve-{token}-{index}".encode()


class Spread:
    """One worker's side: counts its connections, hands new ones over, takes them in."""

    def __init__(self, plan: SpreadPlan, index: int) -> None:
        self.index = index
        self.plan = plan
        self.counts = np.frombuffer(plan.counts, dtype=np.int64).reshape(plan.workers,
                                                                          plan.workers)
        self.row = self.counts[index]
        self.others = [j for j in range(plan.workers) if j != index]
        self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sender.setblocking(False)
        self.receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.receiver.bind(address(plan.token, index))
        self.receiver.setblocking(False)
        self._serve: Callable[[socket.socket], None] | None = None

    def loads(self) -> np.ndarray:
        """Connections held by each worker (handed ones counted from the moment they leave)."""
        return self.counts.sum(axis=0)

    def pass_on(self, transport: asyncio.Transport) -> bool:
        """Hand the just-accepted connection on `transport` to the least-loaded open worker if
        this one holds more; True if it left (the transport is closed: nothing was read)."""
        loads = self.loads().tolist()
        is_open = self.plan.open  # plain ctypes reads: numpy's per-call cost dominates here
        target = min((j for j in self.others if is_open[j]), key=loads.__getitem__, default=None)
        if target is None or loads[self.index] <= loads[target]:
            return False
        sock = transport.get_extra_info("socket")
        try:
            # sendmsg, not socket.send_fds: before Python 3.12 that drops the address
            self.sender.sendmsg([HANDOVER], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                              array.array("i", [sock.fileno()]))],
                               0, address(self.plan.token, target))
        except OSError:  # its queue is full, or it is gone: keep the connection here
            return False
        self.row[target] += 1
        transport.abort()  # closes this copy only: the connection lives on in the target
        return True

    def opened(self) -> None:
        """A connection accepted and kept here."""
        self.row[self.index] += 1

    def closed(self) -> None:
        """A connection served here (kept or received) closed."""
        self.row[self.index] -= 1

    def start(self, loop: asyncio.AbstractEventLoop,
              serve: Callable[[socket.socket], None]) -> None:
        """Take handed connections (each goes to `serve`), and tell the others this worker
        takes them."""
        self._serve = serve
        loop.add_reader(self.receiver.fileno(), self._take)
        self.plan.open[self.index] = 1

    def close_door(self) -> None:
        """Draining: the others stop handing connections here (they may still be in flight)."""
        self.plan.open[self.index] = 0

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop taking connections and close both sockets."""
        self.close_door()
        if self._serve is not None:
            loop.remove_reader(self.receiver.fileno())
            self._serve = None
        self.receiver.close()
        self.sender.close()

    def _take(self) -> None:
        """Every connection waiting on the handover socket, to `serve`."""
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(self.receiver, len(HANDOVER), 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                logger.warning("cannot take a connection handed from another worker: %s", error)
                return
            if not fds:  # the socket did not arrive (out of descriptors): uncount it
                self.closed()
                logger.warning("a connection handed from another worker was lost on the way "
                               "(out of file descriptors? see MLP_MAX_CONNECTIONS)")
            for fd in fds:
                conn = socket.socket(fileno=fd)
                conn.setblocking(False)
                if self._serve is None:
                    conn.close()
                else:
                    self._serve(conn)
