"""Prometheus metrics on the app's own registry, so every app (and test) starts from zero.

With `mlp-serve --workers N` a scrape reaches one worker, which must report the whole fleet:
there the metrics use prometheus_client's multiprocess mode (each worker writes its values to
files in a folder the supervisor owns; a scrape adds up every worker's files).
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from service.process_metrics import FleetProcessCollector, build_labels
from service.statistics import Statistics

# `*_created` series double the scrape and no dashboard or alert reads them.
prometheus_client.disable_created_metrics()

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


GAUGE_REFRESH_S = 0.5


class Tally:
    """One histogram child's observations (and a counter child counted with them) kept as plain
    numbers -- a count per bucket, a sum -- and added to the Prometheus values by `flush()`.

    Why: prometheus_client's `observe` costs 8,900 instructions and `inc` 4,900 in one process,
    17,000 and 9,000 in multiprocess mode (a lock, a getpid and a write to the worker's mmap file
    per value; the two-worker default), and a one-row request makes four of the first and two
    of the second: ~86,000 of its ~1,000,000 instructions, all after its answer, which at one
    client the next request waits for. Counted here, an observation is a bisect and three
    additions (the request's whole saving: see `Metrics`), and a flush adds each bucket's
    count at once, so its cost follows the buckets touched, not the requests.

    prometheus_client has no public call that adds many observations to a histogram, so the
    flush adds to the child's own bucket and sum values (`_buckets`, `_sum`, `_upper_bounds`:
    the attributes `observe` itself uses, the same in 0.20, the oldest allowed, and 0.26;
    tests/service/test_metrics.py checks the exposition is identical to `observe`'s). A
    prometheus_client without them gets `DirectTally`, which observes at once.
    """

    __slots__ = ("_bounds", "_counted", "_counter", "_counts", "_histogram", "_sum")

    def __init__(self, histogram: Any, counter: Any = None) -> None:
        self._histogram, self._counter = histogram, counter
        self._bounds: list[float] = list(histogram._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._counted: float = 0

    def observe(self, amount: float, count: float = 1) -> None:
        """Record `amount` in the histogram (the first bucket whose bound is >= it, as
        `observe` does) and `count` on the counter."""
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount
        self._counted += count

    def flush(self) -> None:
        """Add what was recorded since the last flush to the Prometheus values."""
        if not any(self._counts):
            return
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, counted, self._sum, self._counted = self._sum, self._counted, 0.0, 0
        for value, count in zip(self._histogram._buckets, counts, strict=True):
            if count:
                value.inc(count)
        self._histogram._sum.inc(total)
        if self._counter is not None:
            self._counter.inc(counted)


class DirectTally:
    """`Tally`'s interface straight onto prometheus_client (for a version without the values
    `Tally` adds to)."""

    __slots__ = ("_counter", "_histogram")

    def __init__(self, histogram: Any, counter: Any = None) -> None:
        self._histogram, self._counter = histogram, counter

    def observe(self, amount: float, count: float = 1) -> None:
        self._histogram.observe(amount)
        if self._counter is not None:
            self._counter.inc(count)

    def flush(self) -> None:
        """Nothing is held back."""


Recorder = Tally | DirectTally


def tally(histogram: Any, counter: Any = None) -> Recorder:
    """A `Tally` for this histogram child (and counter child), or a `DirectTally` when this
    prometheus_client lacks the values a Tally adds to."""
    if all(hasattr(histogram, name) for name in ("_buckets", "_sum", "_upper_bounds")):
        return Tally(histogram, counter)
    return DirectTally(histogram, counter)


class Metrics:
    """Every metric the service exports, registered on one private CollectorRegistry.

    `multiprocess_dir` set: this process is one worker of several, and prometheus_client was
    imported with PROMETHEUS_MULTIPROC_DIR pointing there (the supervisor sets it before
    spawning). Live gauges (in flight, queue rows) cannot be read at scrape time from other
    processes, so `refresh_gauges()` writes them every GAUGE_REFRESH_S instead.

    Request and model metrics are counted in `Tally`s and reach prometheus_client on
    `flush()`: at every scrape of this process and, in multiprocess mode, with the gauges every
    GAUGE_REFRESH_S and when the worker stops, so a scrape is exact for the worker it reaches
    and at most that old for the others (as the live gauges and the statistics extension
    already were). Instructions per one-row JSON request over HTTP, one worker under callgrind
    (N = 600 minus N = 100 requests on one connection, as in bench/README.md's "A lone request
    against its floor"): 913,000 -> 871,000. A request's metrics alone (its two observe_*
    calls and the batch callback, in-process under callgrind): 53,000 -> 17,000 instructions
    in one process, 95,000 -> 17,000 in multiprocess mode (the two-worker default).
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mlp_requests_total", "Requests by protocol (http, grpc), route "
                                "or RPC, model and status", ["protocol", "endpoint", "model",
                                                             "version", "status"], registry=r)
        # `status` too, so fast errors (a 503 in microseconds) cannot hide slow successes.
        self.latency = Histogram("mlp_request_duration_seconds",
                                 "Time from request start to response end",
                                 ["protocol", "endpoint", "model", "status"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("mlp_requests_in_flight", "HTTP and gRPC requests being handled",
                               multiprocess_mode="livesum", registry=r)
        self.queue_wait = Histogram("mlp_queue_wait_seconds",
                                    "Time a request waited in the batcher before its model call",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.compute = Histogram("mlp_compute_seconds", "onnxruntime time per batch",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("mlp_batch_rows", "Rows per model call (dynamic batching)",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.rows = Counter("mlp_inference_rows_total", "Rows predicted",
                            ["model", "version"], registry=r)
        self.queue_rows = Gauge("mlp_queue_rows", "Rows waiting in the batcher queue",
                                ["model"], multiprocess_mode="livesum", registry=r)
        self.loaded_version = Gauge("mlp_model_loaded_version", "Version served per model",
                                    ["model"], multiprocess_mode="livemax", registry=r)
        self.load_failures = Counter("mlp_model_load_failures_total",
                                     "Model loads that failed (missing, corrupt or refused file)",
                                     ["model"], registry=r)
        build = build_labels()
        self.build_info = Gauge("mlp_build_info", "Always 1; the labels say what runs",
                                list(build), multiprocess_mode="livemax", registry=r)
        self.build_info.labels(**build).set(1)
        # CPU seconds, resident memory, open fds: of this process, or summed over the workers.
        if multiprocess_dir is None:
            ProcessCollector(registry=r)
        self.statistics = Statistics(r)
        # Multiprocess mode: what refresh_gauges() reads and writes.
        self._in_flight_reading: Callable[[], float] | None = None
        self._queue_readings: dict[str, tuple[Any, Callable[[], float]]] = {}

        # labels() validates and locks on every call; the hot path keeps a Tally per combination
        # of labels instead (flush() walks these three).
        self._request_tallies: dict[tuple[str, str, str, int | str, str], Recorder] = {}
        self._row_tallies: dict[tuple[str, int], Recorder] = {}
        self._batch_tallies: dict[str, tuple[Recorder, Recorder]] = {}

    def track_in_flight(self, in_flight: Callable[[], float]) -> None:
        """Read the in-flight gauge from the server's own count when scraped (no per-request
        gauge updates on the hot path)."""
        if self.multiprocess_dir is None:
            self.in_flight.set_function(in_flight)
        else:
            self._in_flight_reading = in_flight

    def observe_request(self, endpoint: str, model: str, version: str, status: int | str,
                        seconds: float, protocol: str = "http") -> None:
        """Count one request and its duration; gRPC statuses are code names (OK,
        INVALID_ARGUMENT, ...)."""
        key = (endpoint, model, version, status, protocol)
        requests = self._request_tallies.get(key)
        if requests is None:
            requests = self._request_tallies[key] = tally(
                self.latency.labels(protocol, endpoint, model, str(status)),
                self.requests.labels(protocol, endpoint, model, version, str(status)))
        requests.observe(seconds)

    def observe_rows(self, name: str, version: int, rows: int, queue_wait_s: float) -> None:
        """Count predicted rows and the request's wait in the batcher."""
        key = (name, version)
        waits = self._row_tallies.get(key)
        if waits is None:
            waits = self._row_tallies[key] = tally(
                self.queue_wait.labels(name), self.rows.labels(name, str(version)))
        waits.observe(queue_wait_s, rows)

    def model_loaded(self, name: str, version: int, queue_rows: Callable[[], float]) -> None:
        """Publish the served version and a live queue-depth reading for `name`."""
        self.loaded_version.labels(name).set(version)
        if self.multiprocess_dir is None:
            self.queue_rows.labels(name).set_function(queue_rows)
        else:
            self._queue_readings[name] = (self.queue_rows.labels(name), queue_rows)

    def model_load_failed(self, name: str) -> None:
        """Count a load of `name` that raised (at start-up or through model control)."""
        self.load_failures.labels(name).inc()

    def model_unloaded(self, name: str) -> None:
        """Drop the per-model gauges of an unloaded model.

        Multiprocess files cannot drop a series: there the queue reads 0 and the version gauge
        keeps the unloaded version until the worker exits (after an unload through model
        control too).
        """
        if self.multiprocess_dir is None:
            for gauge in (self.loaded_version, self.queue_rows):
                with contextlib.suppress(KeyError):
                    gauge.remove(name)
        elif name in self._queue_readings:
            self._queue_readings.pop(name)[0].set(0)

    def refresh_gauges(self) -> None:
        """Multiprocess mode: write this worker's in-flight count, queue depths, request and
        model metrics and inference statistics now."""
        self.flush()
        if self._in_flight_reading is not None:
            self.in_flight.set(self._in_flight_reading())
        for child, reading in self._queue_readings.values():
            child.set(reading())

    async def keep_gauges_fresh(self) -> None:
        """Multiprocess mode: refresh_gauges() every GAUGE_REFRESH_S until cancelled, so a
        scrape of any worker sees the others' gauges at most that old (no per-request cost)."""
        while True:
            self.refresh_gauges()
            await asyncio.sleep(GAUGE_REFRESH_S)

    def batch_recorder(self, name: str, version: int) -> Callable[[int, float], None]:
        """Callback for the batcher: one observation per model call."""
        tallies = self._batch_tallies.get(name)  # one pair per model, whatever its reloads
        if tallies is None:
            tallies = self._batch_tallies[name] = (tally(self.batch_rows.labels(name)),
                                                   tally(self.compute.labels(name)))
        rows, compute = tallies
        statistics = self.statistics

        def record(batch_rows: int, compute_s: float) -> None:
            rows.observe(batch_rows)
            compute.observe(compute_s)
            statistics.batch(name, version, batch_rows, compute_s)

        return record

    def flush(self) -> None:
        """Add everything counted on the hot path since the last flush to the Prometheus
        values (multiprocess mode: this worker's files)."""
        self.statistics.flush()
        for recorder in (*self._request_tallies.values(), *self._row_tallies.values(),
                         *(r for pair in self._batch_tallies.values() for r in pair)):
            recorder.flush()

    def render(self) -> bytes:
        """Prometheus text format: this registry, or every worker's files in multiprocess mode
        (this worker's gauges refreshed first, so they are exact)."""
        return generate_latest(self._current())

    def families(self) -> Iterable[Metric]:
        """Every metric family now (this process's, or the whole fleet's), for the statistics
        extension."""
        return self._current().collect()

    def _current(self) -> CollectorRegistry:
        """This registry, or in multiprocess mode one that adds up every worker's files; this
        process's counts flushed (and gauges refreshed) first, so they are exact."""
        if self.multiprocess_dir is None:
            self.flush()
            return self.registry
        self.refresh_gauges()
        fleet = CollectorRegistry()
        MultiProcessCollector(fleet, path=str(self.multiprocess_dir))
        fleet.register(FleetProcessCollector(self.multiprocess_dir))
        return fleet
