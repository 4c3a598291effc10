"""Pin a worker process to one CPU, so its event loop and its model thread share that CPU.

Why: every request crosses from the event loop to the model thread and back. Between two CPUs
each crossing wakes an idle CPU, which costs tens of microseconds on a virtual machine; on one
CPU it is a plain thread switch. Measured here with two workers on two cores: 1-client p50
500 -> 400 us, 64-client throughput unchanged or better (bench/README.md). Pinning suits a
machine the service owns, so `auto` pins only when there is one worker per usable CPU.
"""

from __future__ import annotations

import logging
import os

from service.settings import Settings

logger = logging.getLogger("mlp_serve")


def pin_to_cpu(index: int, settings: Settings) -> int | None:
    """Pin the calling thread (and the threads it starts later) of worker `index` to one CPU
    per settings.cpu_pinning; the CPU, or None when not pinned. Call it before any thread
    starts: Linux applies affinity per thread, and new threads inherit their creator's."""
    if settings.cpu_pinning == "off" or not hasattr(os, "sched_setaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    if settings.cpu_pinning == "auto" and not 1 < len(usable) == settings.workers:
        return None
    cpu = usable[index % len(usable)]
    os.sched_setaffinity(0, {cpu})
    logger.debug("worker %d pinned to CPU %d", index, cpu)
    return cpu
