"""How many CPUs this process may use: its affinity mask and its cgroup's CPU quota, whichever
is smaller (what `--workers auto` starts).

Why both: `os.cpu_count()` counts the machine. A container limited to one CPU by its cgroup quota
(Kubernetes `limits.cpu: 1`, `docker run --cpus 1`) still sees every core in its affinity mask;
two workers there would share one CPU's time and each be throttled. A fractional quota rounds
down (1.5 CPUs -> 1 worker), never below one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs in the affinity mask, capped by the cgroup v2 or v1 CPU quota; at least 1."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT,
                     proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota in CPUs (quota / period) over this process's cgroup and its
    ancestors, None when unlimited or unknown. cgroup v2: `cpu.max` ("max 100000" or
    "200000 100000"); v1: `cpu.cfs_quota_us` (-1 = unlimited) over `cpu.cfs_period_us`. The
    folders come from /proc/self/cgroup; a container sees its own cgroup at the mount's root."""
    quotas = [q for folder in _candidate_folders(cgroup_root, proc_cgroup)
              if (q := _quota(folder)) is not None]
    return min(quotas, default=None)


def _quota(folder: Path) -> float | None:
    v2 = _read(folder / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else _ratio(quota, period)
    v1 = _read(folder / "cpu.cfs_quota_us")
    if v1 is None or v1.startswith("-"):
        return None
    return _ratio(v1, _read(folder / "cpu.cfs_period_us") or "")


def _candidate_folders(root: Path, proc_cgroup: Path) -> list[Path]:
    """Own cgroup folders and their ancestors (v2 "0::/path", v1 "N:cpu,cpuacct:/path"), and
    the v2 and v1 roots."""
    folders: list[Path] = [root, root / "cpu,cpuacct", root / "cpu"]
    for line in (_read(proc_cgroup) or "").splitlines():
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if controllers == "":
            bases = [root]
        elif "cpu" in controllers.split(","):
            bases = [root / controllers, root / "cpu"]
        else:
            continue
        parts = [part for part in path.strip().split("/") if part and part != ".."]
        for base in bases:
            folders += [base.joinpath(*parts[:depth]) for depth in range(1, len(parts) + 1)]
    return folders


def _ratio(quota: str, period: str) -> float | None:
    try:
        value, per = int(quota), int(period)
    except ValueError:
        return None
    return value / per if value > 0 and per > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
