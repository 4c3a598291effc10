"""Prometheus metrics on the app's own registry, so every app (and test) starts from zero.

With `mlp-serve --workers N` a scrape reaches one worker, which must report the whole fleet:
there the metrics use prometheus_client's multiprocess mode (each worker writes its values to
files in a folder the supervisor owns; a scrape adds up every worker's files).
"""

from __future__ import annotations

import asyncio
import contextlib
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


class Metrics:
    """Every metric the service exports, registered on one private CollectorRegistry.

    `multiprocess_dir` set: this process is one worker of several, and prometheus_client was
    imported with PROMETHEUS_MULTIPROC_DIR pointing there (the supervisor sets it before
    spawning). Live gauges (in flight, queue rows) cannot be read at scrape time from other
    processes, so `refresh_gauges()` writes them every GAUGE_REFRESH_S instead.
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

        # labels() validates and locks on every call; the hot path reuses the children instead.
        self._request_children: dict[tuple[str, str, str, int | str, str],
                                     tuple[Any, Any]] = {}
        self._model_children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def track_in_flight(self, in_flight: Callable[[], float]) -> None:
        """Read the in-flight gauge from the server's own count when scraped (no per-request
        gauge updates on the hot path)."""
        if self.multiprocess_dir is None:
            self.in_flight.set_function(in_flight)
        else:
            self._in_flight_reading = in_flight

    def observe_request(self, endpoint: str, model: str, version: str, status: int | str,
                        seconds: float, protocol: str = "http") -> None:
        """Count one request and its duration (label children cached per combination); gRPC
        statuses are code names (OK, INVALID_ARGUMENT, ...)."""
        key = (endpoint, model, version, status, protocol)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(protocol, endpoint, model, version, str(status)),
                        self.latency.labels(protocol, endpoint, model, str(status)))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_rows(self, name: str, version: int, rows: int, queue_wait_s: float) -> None:
        """Count predicted rows and the request's wait in the batcher."""
        key = (name, version)
        children = self._model_children.get(key)
        if children is None:
            children = (self.rows.labels(name, str(version)), self.queue_wait.labels(name))
            self._model_children[key] = children
        children[0].inc(rows)
        children[1].observe(queue_wait_s)

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
        """Multiprocess mode: write this worker's in-flight count, queue depths and inference
        statistics now."""
        self.statistics.flush()
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
        rows, compute = self.batch_rows.labels(name), self.compute.labels(name)
        statistics = self.statistics

        def record(batch_rows: int, compute_s: float) -> None:
            rows.observe(batch_rows)
            compute.observe(compute_s)
            statistics.batch(name, version, batch_rows, compute_s)

        return record

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
        process's statistics flushed (and gauges refreshed) first, so they are exact."""
        if self.multiprocess_dir is None:
            self.statistics.flush()
            return self.registry
        self.refresh_gauges()
        fleet = CollectorRegistry()
        MultiProcessCollector(fleet, path=str(self.multiprocess_dir))
        fleet.register(FleetProcessCollector(self.multiprocess_dir))
        return fleet
