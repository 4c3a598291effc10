"""How many CPUs a sweep may use: read by the command line (default worker count, publishing
threads) and by the runner (threads per worker), so neither imports the other."""

import os


def cores() -> int:
    """CPUs this process may use (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    return len(os.sched_getaffinity(0))
