"""Process metrics for a fleet of workers, and the build-info labels.

One process: prometheus_client's ProcessCollector reports it. With `--workers N` a scrape
reaches one worker, which must report the whole service: FleetProcessCollector finds the workers
by the files each writes to the multiprocess folder (`<kind>_<pid>.db`) and sums their CPU
seconds, resident and virtual memory and open fds (start time: the oldest; max fds: the largest).
"""

from __future__ import annotations

import functools
import platform
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from prometheus_client import ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

WORKER_FILE = re.compile(r"_(\d+)\.db$")


def build_labels() -> dict[str, str]:
    """What runs: this package's, onnxruntime's and Python's versions."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"
    return {"version": version("mlp-serve"), "onnxruntime": version("onnxruntime"),
            "python": platform.python_version()}


class FleetProcessCollector(Collector):
    """process_* metrics summed over the live worker processes of one multiprocess folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def pids(self) -> list[int]:
        """Workers that wrote metrics and are still running."""
        found = {int(m[1]) for f in self.folder.glob("*.db") if (m := WORKER_FILE.search(f.name))}
        return sorted(pid for pid in found if Path(f"/proc/{pid}").exists())

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in self.pids():
            collector = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in collector.collect():
                total = merged.setdefault(family.name, family)
                if total is family:
                    continue
                mine, theirs = total.samples[0], family.samples[0]
                combine = {"process_start_time_seconds": min, "process_max_fds": max}.get(
                    mine.name, lambda a, b: a + b)
                total.samples[0] = mine._replace(value=combine(mine.value, theirs.value))
        yield from merged.values()
