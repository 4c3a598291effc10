"""Triton's statistics extension: per model version, how many requests succeeded or failed and
where their time went, plus how many model calls ran at each batch size.

Stages of one request, as `DataPlane.predict` sees them (their sum is about the success time):
- compute_input: arrival to the rows entering the batcher (reading, decoding, checking);
- queue: waiting in the batcher for the model;
- compute_infer: the onnxruntime call of the batch the request rode in;
- compute_output: the model's answer to the response being encoded (the handler yielding).
Failures are requests that reached the batcher and got no answer (queue full, deadline, model
error, shutdown); bad input is refused before and counted by the request metrics only.

Recording is a few additions to plain numbers per request. `flush()` moves them into Prometheus
counters (so /metrics shows them and, with `--workers N`, every worker's add up through the
multiprocess files); `report()` flushes this worker's and reads the counters back, so it is
exact for one process and at most GAUGE_REFRESH_S old for the other workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric

STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
NS = 1_000_000_000


@dataclass(slots=True)
class _Tally:
    """What one model version recorded since the last flush."""

    counts: list[int] = field(default_factory=lambda: [0] * len(STAGES))
    seconds: list[float] = field(default_factory=lambda: [0.0] * len(STAGES))
    batches: dict[int, list[float]] = field(default_factory=dict)  # rows -> [count, seconds]
    last_s: float = 0.0


class Statistics:
    """Record inference statistics per (model, version) and report them as Triton does."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.stage_count = Counter("mlp_inference_stage", "Requests counted per statistics "
                                   "stage (success, fail, queue, compute_*)",
                                   ["model", "version", "stage"], registry=r)
        self.stage_seconds = Counter("mlp_inference_stage_seconds", "Cumulative time per "
                                     "statistics stage", ["model", "version", "stage"],
                                     registry=r)
        self.batch_count = Counter("mlp_batch_executions", "Model calls per batch size",
                                   ["model", "version", "batch_size"], registry=r)
        self.batch_seconds = Counter("mlp_batch_compute_seconds", "Cumulative onnxruntime time "
                                     "per batch size", ["model", "version", "batch_size"],
                                     registry=r)
        self.last = Gauge("mlp_last_inference_timestamp_seconds", "Unix time of the last "
                          "successful request", ["model", "version"], multiprocess_mode="max",
                          registry=r)
        self._tallies: dict[tuple[str, int], _Tally] = {}

    def _tally(self, name: str, version: int) -> _Tally:
        tally = self._tallies.get((name, version))
        if tally is None:
            tally = self._tallies[(name, version)] = _Tally()
        return tally

    def success(self, name: str, version: int, arrived: float, submitted: float,
                answered: float, queue_s: float, infer_s: float) -> None:
        """One answered request (called when its handler yields, i.e. its answer is encoded)."""
        now = time.monotonic()
        tally = self._tally(name, version)
        spans = (now - arrived, 0.0, queue_s, submitted - arrived, infer_s, now - answered)
        for index, seconds in enumerate(spans):
            if index != 1:
                tally.counts[index] += 1
                tally.seconds[index] += seconds
        tally.last_s = time.time()

    def failure(self, name: str, version: int, arrived: float) -> None:
        """One request that reached the batcher and got no answer."""
        tally = self._tally(name, version)
        tally.counts[1] += 1
        tally.seconds[1] += time.monotonic() - arrived

    def batch(self, name: str, version: int, rows: int, compute_s: float) -> None:
        """One model call of `rows` rows."""
        entry = self._tally(name, version).batches.setdefault(rows, [0, 0.0])
        entry[0] += 1
        entry[1] += compute_s

    def flush(self) -> None:
        """Add what was recorded since the last flush to the Prometheus counters."""
        tallies, self._tallies = self._tallies, {}
        for (name, number), tally in tallies.items():
            version = str(number)
            for stage, count, seconds in zip(STAGES, tally.counts, tally.seconds, strict=True):
                if count:
                    self.stage_count.labels(name, version, stage).inc(count)
                    self.stage_seconds.labels(name, version, stage).inc(seconds)
            for rows, (executions, compute_s) in tally.batches.items():
                self.batch_count.labels(name, version, str(rows)).inc(executions)
                self.batch_seconds.labels(name, version, str(rows)).inc(compute_s)
            if tally.last_s:
                self.last.labels(name, version).set(tally.last_s)


def report(families: Iterable[Metric], versions: dict[str, list[int]]) -> list[dict[str, Any]]:
    """Triton's `model_stats` for the model versions in `versions`, from metric families (this
    registry's or the whole fleet's); versions with nothing recorded report zeros."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name, numbers in versions.items():
        for number in numbers:
            found[(name, str(number))] = _empty(name, str(number))
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            entry = found.get((labels.get("model", ""), labels.get("version", "")))
            if entry is not None:
                _add(entry, sample.name, labels, sample.value)
    for entry in found.values():
        entry["batch_stats"] = [entry["batch_stats"][size]
                                for size in sorted(entry["batch_stats"])]
    return list(found.values())


def _empty(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "version": version, "last_inference": 0, "inference_count": 0,
            "execution_count": 0,
            "inference_stats": {stage: {"count": 0, "ns": 0} for stage in STAGES},
            "batch_stats": {}}


def _batch(entry: dict[str, Any], size: int) -> dict[str, Any]:
    stats = entry["batch_stats"]
    if size not in stats:
        stats[size] = {"batch_size": size,
                       **{stage: {"count": 0, "ns": 0} for stage in
                          ("compute_input", "compute_infer", "compute_output")}}
    return stats[size]


def _add(entry: dict[str, Any], sample: str, labels: dict[str, str], value: float) -> None:
    """Fold one Prometheus sample into a Triton model_stats entry."""
    stats = entry["inference_stats"]
    if sample == "mlp_inference_stage_total":
        stats[labels["stage"]]["count"] += int(value)
    elif sample == "mlp_inference_stage_seconds_total":
        stats[labels["stage"]]["ns"] += round(value * NS)
    elif sample == "mlp_batch_executions_total":
        _batch(entry, int(labels["batch_size"]))["compute_infer"]["count"] += int(value)
        entry["execution_count"] += int(value)
    elif sample == "mlp_batch_compute_seconds_total":
        _batch(entry, int(labels["batch_size"]))["compute_infer"]["ns"] += round(value * NS)
    elif sample == "mlp_inference_rows_total":
        entry["inference_count"] += int(value)
    elif sample == "mlp_last_inference_timestamp_seconds":
        entry["last_inference"] = max(entry["last_inference"], round(value * 1000))
