"""Dynamic batching: merge concurrent requests into one model call.

How to use it (the whole interface):

    batcher = DynamicBatcher(run_batch, max_batch_rows=256, max_delay_s=0.002,
                             max_queue_rows=4096, on_batch=record_batch)
    await batcher.start()                      # inside the running loop (app lifespan)
    result = await batcher.submit(rows, deadline=time.monotonic() + 1.0)
    result.outputs["probabilities"]            # this request's rows only
    result.queue_wait_s, result.compute_s      # per-request timings for metrics
    await batcher.drain_and_stop()             # on shutdown: answer everything, then stop

- `run_batch(batch) -> {output name: array}` runs in the batcher's own model thread, never on
  the event loop. Every output's axis 0 must match the batch's rows.
- `submit` returns a `BatchResult`; `on_batch(batch_rows, compute_s)` (optional) is called on the
  loop once per model call, for a batch-size histogram (after the batch's requests resume).
- `expect()` (on a request's arrival, before its body is read) raises `QueueFullError` when no
  request could fit right now, so a server refuses load before paying for reading and decoding;
  otherwise it returns an `Arrival` to close (`done()`) once the request is submitted or failed.
  A batch under load waits for open arrivals (see Policy).
- Errors are the service's own (service/errors.py), so they reach the client as they are:
  `QueueFullError` (a ServiceUnavailable: 503 + Retry-After, at once, nothing queued),
  `DeadlineExceededError` (a DeadlineExceeded: 504, the deadline passed while queued or
  computing; never a late answer), `BatcherStoppedError` (a ServiceUnavailable: submit before
  `start` or after `drain_and_stop`). If `run_batch` raises,
  each request of that batch gets that exception and the batcher keeps serving.

Policy (adaptive, like Triton's scheduler with a queue delay): an idle batcher sends a request to
the model at once, so one client never pays `max_delay_s` -- unless `crowded()` says other
requests are in, when it waits as under load (below). Why: at 64 HTTP clients a worker serves
rounds of ~30 requests, and the first of each round used to reach the idle batcher alone, so
half of all model calls were one row (mlp_batch_rows) and that row's thread hand-offs ran
amid the round's decoding; waiting one pass made them rare (9,513 -> 519 of ~200,000
requests), with 27% fewer voluntary and 12% fewer involuntary context switches per request
and 4% more requests/s (interleaved wrk rounds, bench/README.md). While a batch computes, new
requests queue up and the next batch takes all of them (up to `max_batch_rows`). When a batch
leaves requests behind (the batcher is under load), the next one waits only for requests that have
already arrived: one loop pass for those whose handlers are runnable now, and -- up to
`max_delay_s` after the oldest queued request -- for those still reading or decoding their body
(announced with `expect()`). Waiting for requests nobody has sent yet would only add latency:
with 8 clients per worker, the old wait-for-a-full-batch rule held every batch for the whole
delay and halved throughput. A request larger than `max_batch_rows` is not split: it runs alone
as one batch. While draining, queued requests go to the model without waiting.
Rows must share dtype and shape[1:]; the caller validates them.

Inline (`inline_max_rows`, off by default): a request of at most that many rows that finds the
batcher idle -- no batch computing, nothing queued, no other request arriving, and `crowded()`
false (the front end's word that no other request has come in: HTTP counts requests parsed but
not answered, which includes handlers the loop has not run yet) -- runs the model right on the
event loop instead of the model thread. A lone small request costs tens of
microseconds in onnxruntime, less than the two thread hand-offs and the loop wake-up around
them (measured at one client: bench/README.md); the moment a second request is in the
building, everything goes through the queue and the model thread as above.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import DeadlineExceeded, ServiceUnavailable

RunBatch = Callable[[np.ndarray], dict[str, np.ndarray]]


class QueueFullError(ServiceUnavailable):
    """Too many rows are waiting; the client should retry after `retry_after_s` seconds."""

    def __init__(self, queued_rows: int, new_rows: int | None, max_queue_rows: int,
                 retry_after_s: int = 1) -> None:
        adds = ("" if new_rows is None else f" and this request adds {new_rows}")
        over = "at" if new_rows is None else "over"
        super().__init__(
            f"server busy: {queued_rows} rows are queued{adds}, {over} the limit of "
            f"{max_queue_rows}; retry after {retry_after_s} s", retry_after_s
        )


class DeadlineExceededError(DeadlineExceeded):
    """The request's deadline passed before its answer was ready."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(
            f"request timed out after {waited_s * 1000:.0f} ms waiting for the model; "
            "retry later or send fewer rows"
        )


class BatcherStoppedError(ServiceUnavailable):
    """The batcher is not running (not started yet, or draining for shutdown)."""

    def __init__(self) -> None:
        super().__init__("the model is not accepting requests (server starting or shutting down)")


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One request's answer: its slice of each output, and where its time went."""

    outputs: dict[str, np.ndarray]
    queue_wait_s: float
    compute_s: float
    batch_rows: int


@dataclass(slots=True)
class _Pending:
    rows: np.ndarray
    deadline: float
    future: asyncio.Future[BatchResult]
    enqueued_at: float = field(default_factory=time.monotonic)


class _ModelThread:
    """One thread that runs model calls for one batcher and reports back on the loop.

    Why not `run_in_executor`: measured with a 1-row onnxruntime call on uvloop, the pool's
    concurrent.futures.Future, its chained callbacks and wrap_future cost ~30 us more CPU and
    ~50 us more latency per call than one queue put and one call_soon_threadsafe.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, loop: asyncio.AbstractEventLoop, fn: Callable[[Any], Any], arg: Any,
             done: Callable[[Any, BaseException | None], None]) -> None:
        """Run fn(arg) in the thread, then done(result, error) on `loop`."""
        self._jobs.put((loop, fn, arg, done))

    def stop(self) -> None:
        """Finish the current call, then end the thread."""
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, fn, arg, done = job
            try:
                result, error = fn(arg), None
            except BaseException as exc:  # handed to the batch's requests, as an executor does
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(done, result, error)


class Arrival:
    """A request admitted on arrival whose rows are not queued yet (its body is being read or
    decoded). `done()` is idempotent: call it right before submitting, and again on any exit."""

    __slots__ = ("_batcher",)

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher: DynamicBatcher | None = batcher
        batcher._arriving += 1

    def done(self) -> None:
        """This request no longer counts as on its way to the queue."""
        if self._batcher is not None:
            self._batcher._arriving -= 1
            self._batcher = None


class DynamicBatcher:
    """Queue requests and run them through `run_batch` in merged batches (see module doc).

    No worker task: batches are formed in plain loop callbacks -- when a request arrives at an
    idle batcher, when the model thread reports a finished batch, or when a linger timer fires
    -- so a request costs no extra task switches between its arrival and its model call.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_rows: int,
        max_delay_s: float,
        max_queue_rows: int,
        on_batch: Callable[[int, float], None] | None = None,
        inline_max_rows: int = 0,
        crowded: Callable[[], bool] = lambda: False,
    ) -> None:
        if max_batch_rows < 1 or max_queue_rows < 1 or max_delay_s < 0:
            raise ValueError(
                f"need max_batch_rows >= 1 (got {max_batch_rows}), max_queue_rows >= 1 "
                f"(got {max_queue_rows}) and max_delay_s >= 0 (got {max_delay_s})"
            )
        self._run_batch = run_batch
        self._max_batch_rows = max_batch_rows
        self._max_delay_s = max_delay_s
        self._max_queue_rows = max_queue_rows
        self._thread: _ModelThread | None = None
        self._on_batch = on_batch
        self._inline_max_rows = inline_max_rows
        self._crowded = crowded
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._queued_rows = 0
        self._busy = False  # a batch is in the model
        self._under_load = False  # the last batch left requests behind: linger for fuller ones
        self._linger: asyncio.TimerHandle | None = None  # waiting for open arrivals
        self._pass: asyncio.Handle | None = None  # waiting one loop pass for runnable handlers
        self._passed = False  # the current wait already gave that one pass
        self._arriving = 0  # open Arrivals: admitted requests not yet submitted
        self._accepting = False
        self._stopped: asyncio.Future[None] | None = None

    @property
    def queue_rows(self) -> int:
        """Rows submitted and not yet taken into a batch."""
        return self._queued_rows

    def refuse_if_full(self) -> None:
        """QueueFullError when the queue is already at its bound: a request can be refused on
        arrival, before its body is read and decoded, when no number of rows would fit."""
        if self._queued_rows >= self._max_queue_rows:
            raise QueueFullError(self._queued_rows, None, self._max_queue_rows)

    def expect(self) -> Arrival:
        """Admit a request on arrival: QueueFullError when the queue is at its bound, else an
        Arrival the next batch may wait for (up to max_delay_s) while its body comes in."""
        self.refuse_if_full()
        return Arrival(self)

    async def start(self) -> None:
        """Bind to the running loop and start the model thread."""
        if self._loop is not None:
            raise RuntimeError("DynamicBatcher.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._thread = _ModelThread("batcher")
        self._accepting = True

    async def submit(self, rows: np.ndarray, *, deadline: float) -> BatchResult:
        """Queue `rows` ([n, ...], n >= 1) and wait for their outputs, until `deadline`."""
        submitted = time.monotonic()
        if not self._accepting or self._loop is None:
            raise BatcherStoppedError()
        n = len(rows)
        if n < 1:
            raise ValueError("submit() needs at least one row")
        if self._queued_rows + n > self._max_queue_rows:
            raise QueueFullError(self._queued_rows, n, self._max_queue_rows)
        resting = self._linger is None and self._pass is None  # not waiting for others yet
        if (n <= self._inline_max_rows and not self._busy and not self._waiting
                and self._arriving == 0 and resting and not self._crowded()):
            return self._run_inline(rows, deadline, submitted)
        loop = self._loop
        item = _Pending(rows, deadline, loop.create_future())
        self._waiting.append(item)
        self._queued_rows += n
        if not self._busy and resting and self._crowded():
            self._under_load = True  # others are in: the runnable ones join this batch
        if not self._busy and (
            resting  # idle: to the model (after one loop pass when others are in)
            or self._queued_rows >= self._max_batch_rows  # the batch is full
            or (self._linger is not None and self._arriving == 0)  # nobody else is coming
        ):
            self._dispatch()
        # A plain timer, not asyncio.timeout(): same effect, a third of the cost per request.
        timer = loop.call_at(loop.time() + (deadline - time.monotonic()), _expire, item)
        try:
            return await item.future  # done early (expired, cancelled) -> the batch skips it
        finally:
            timer.cancel()

    def _run_inline(self, rows: np.ndarray, deadline: float, submitted: float) -> BatchResult:
        """One lone small request, run on the loop: same checks and answer as a batch of one
        (its queue wait is the microsecond from submit() to the model call)."""
        started = time.monotonic()
        if deadline <= started:
            raise DeadlineExceededError(0.0)
        outputs, compute_s = self._timed(rows)
        _check_outputs(outputs, len(rows))
        if self._on_batch is not None:
            assert self._loop is not None
            self._loop.call_soon(self._on_batch, len(rows), compute_s)
        finished = time.monotonic()
        if deadline <= finished:
            raise DeadlineExceededError(finished - started)
        return BatchResult(outputs, started - submitted, compute_s, len(rows))

    async def drain_and_stop(self) -> None:
        """Refuse new requests, answer every queued and running one, then stop the thread."""
        if self._loop is None:
            return
        if self._stopped is None:  # only the first call starts the drain; others just wait
            self._accepting = False
            self._stopped = self._loop.create_future()
            if not self._busy:
                self._dispatch()
        await asyncio.shield(self._stopped)

    def _dispatch(self) -> None:
        """Start the next batch, or wait for arrived requests to join it, or finish a drain
        (loop only)."""
        for handle in (self._linger, self._pass):
            if handle is not None:
                handle.cancel()
        self._linger = self._pass = None
        assert self._loop is not None
        while self._waiting:
            first = self._waiting[0]
            if self._under_load and self._accepting and self._queued_rows < self._max_batch_rows:
                if not self._passed:  # handlers already runnable submit during this pass
                    self._passed = True
                    self._pass = self._loop.call_soon(self._dispatch)
                    return
                wait_s = first.enqueued_at + self._max_delay_s - time.monotonic()
                if self._arriving > 0 and wait_s > 0:  # bodies still coming in
                    self._linger = self._loop.call_later(wait_s, self._dispatch)
                    return
            self._passed = False
            batch = [self._waiting.popleft()]
            rows = len(first.rows)
            while self._waiting and rows + len(self._waiting[0].rows) <= self._max_batch_rows:
                item = self._waiting.popleft()  # a request that does not fit starts the next
                batch.append(item)
                rows += len(item.rows)
            self._queued_rows -= rows
            if self._run(batch):
                return
        self._under_load = self._passed = False
        if self._stopped is not None and not self._stopped.done():
            self._stop_thread()

    def _run(self, batch: list[_Pending]) -> bool:
        """Hand a batch's live requests to the model thread; False if none was left to run."""
        started = time.monotonic()
        live = [p for p in batch if not p.future.done()]  # done = cancelled or timed out
        for p in live:
            if p.deadline <= started:
                p.future.set_exception(DeadlineExceededError(started - p.enqueued_at))
        live = [p for p in live if not p.future.done()]
        if not live:
            return False
        try:
            inputs = live[0].rows if len(live) == 1 else np.concatenate([p.rows for p in live])
        except Exception as error:  # rows that cannot be merged: fail them, keep serving
            for p in live:
                p.future.set_exception(error)
            return False
        self._busy = True
        loop = self._loop
        assert loop is not None

        def done(result: Any, error: BaseException | None) -> None:
            self._finish(live, started, len(inputs), result, error)

        assert self._thread is not None
        self._thread.call(loop, self._timed, inputs, done)
        return True

    def _finish(self, live: list[_Pending], started: float, rows: int, result: Any,
                error: BaseException | None) -> None:
        """On the loop: answer each request of a finished batch, then start the next one."""
        self._busy = False
        try:
            if error is not None:
                raise error
            outputs, compute_s = result
            _check_outputs(outputs, rows)
            if self._on_batch is not None:  # runs after the answered requests' handlers
                assert self._loop is not None
                self._loop.call_soon(self._on_batch, rows, compute_s)
        except Exception as failure:  # the model failed: every request of this batch gets it
            for p in live:
                if not p.future.done():
                    p.future.set_exception(failure)
        else:
            finished = time.monotonic()
            start = 0
            for p in live:
                stop = start + len(p.rows)
                if p.future.done():
                    pass
                elif p.deadline <= finished:
                    p.future.set_exception(DeadlineExceededError(finished - p.enqueued_at))
                else:
                    sliced = {name: array[start:stop] for name, array in outputs.items()}
                    p.future.set_result(BatchResult(sliced, started - p.enqueued_at, compute_s,
                                                    rows))
                start = stop
        self._under_load = bool(self._waiting)  # requests arrived while this batch computed
        self._dispatch()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        assert self._stopped is not None
        self._stopped.set_result(None)

    def _timed(self, inputs: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """Run the model in the model thread and measure only the model call."""
        t0 = time.perf_counter()
        outputs = self._run_batch(inputs)
        return outputs, time.perf_counter() - t0


def _check_outputs(outputs: dict[str, np.ndarray], rows: int) -> None:
    """Refuse outputs that cannot be split back per request (a model or run_batch bug)."""
    for name, array in outputs.items():
        shape = getattr(array, "shape", ())
        if not shape or shape[0] != rows:
            raise RuntimeError(
                f"run_batch output {name!r} has shape {np.shape(array)}, expected {rows} rows "
                "on axis 0 (one per input row)"
            )


def _expire(item: _Pending) -> None:
    """Deadline timer: fail the request unless it was already answered."""
    if not item.future.done():
        item.future.set_exception(DeadlineExceededError(time.monotonic() - item.enqueued_at))
