"""Resident-memory sampling of a process tree with psutil: a background thread records RSS
every few milliseconds, so a short spike (a 100 MB body buffered for a moment) is not missed."""

from __future__ import annotations

import contextlib
import threading
import time
from types import TracebackType

import psutil

MB = 1024 * 1024


def tree_rss(pid: int) -> int:
    """RSS of `pid` and all its children, in bytes (0 once the process is gone)."""
    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


class RssSampler:
    """Context manager: samples `tree_rss(pid)` every `interval_s` until exit; keeps all samples."""

    def __init__(self, pid: int, interval_s: float = 0.005) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[int] = []
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss(self.pid)
            if rss:
                self.samples.append(rss)
                self.times.append(time.monotonic())
            time.sleep(self.interval_s)

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    def median_of_last(self, seconds: float) -> int:
        """Median RSS over the final `seconds` of sampling: steady state, robust to spikes."""
        end = self.times[-1]
        recent = sorted(s for s, t in zip(self.samples, self.times, strict=True)
                        if t >= end - seconds)
        return recent[len(recent) // 2]

    def __enter__(self) -> RssSampler:
        self.samples.append(tree_rss(self.pid))
        self.times.append(time.monotonic())
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
