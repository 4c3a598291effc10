"""How many CPUs a sweep may use (default worker count, threads per worker, publishing threads):
a module of its own, so parser code and the study code need not import each other."""

import os


def cores() -> int:
    """CPUs this process may use (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    return len(os.sched_getaffinity(0))
