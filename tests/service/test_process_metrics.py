"""Process metrics of a `--workers N` fleet: summed over the live workers that wrote metrics."""

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import ProcessCollector

from service.process_metrics import FleetProcessCollector


def values(collector: object) -> dict[str, float]:
    return {s.name: s.value for family in collector.collect()  # type: ignore[attr-defined]
            for s in family.samples}


def test_fleet_sums_the_live_workers_and_skips_the_dead(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        for pid in (os.getpid(), other.pid, int(dead)):
            (tmp_path / f"counter_{pid}.db").write_bytes(b"")
        fleet = FleetProcessCollector(tmp_path)
        assert fleet.pids() == sorted([os.getpid(), other.pid])
        mine = values(ProcessCollector(registry=None))
        theirs = values(ProcessCollector(pid=lambda: other.pid, registry=None))
        total = values(fleet)
        assert total["process_open_fds"] == mine["process_open_fds"] + theirs["process_open_fds"]
        assert total["process_start_time_seconds"] == min(
            mine["process_start_time_seconds"], theirs["process_start_time_seconds"])
        assert total["process_resident_memory_bytes"] > theirs["process_resident_memory_bytes"]
    finally:
        other.kill()
        other.wait()
