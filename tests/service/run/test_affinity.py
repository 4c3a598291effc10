"""CPU pinning of worker processes: which CPU each worker gets, and that it really sticks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.run.affinity import pin_to_cpu
from service.settings import Settings

FLEET = {"control_enabled": False, "port": 8000}


@pytest.fixture
def cpus(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """Pretend CPUs 4, 6 and 9 are usable; record every affinity set."""
    pinned: list[set[int]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {9, 4, 6})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, mask: pinned.append(set(mask)))
    return pinned


def test_auto_pins_only_with_one_worker_per_usable_cpu(cpus: list[set[int]]) -> None:
    assert pin_to_cpu(0, Settings(**FLEET, workers=2)) is None  # 2 workers, 3 CPUs
    assert pin_to_cpu(0, Settings(control_enabled=False, workers=1)) is None  # 1 worker
    fleet = Settings(**FLEET, workers=3)
    assert [pin_to_cpu(i, fleet) for i in range(3)] == [4, 6, 9]
    assert cpus == [{4}, {6}, {9}]


def test_on_pins_every_worker_round_robin_and_off_never(cpus: list[set[int]]) -> None:
    on = Settings(**FLEET, workers=4, cpu_pinning="on")
    assert [pin_to_cpu(i, on) for i in range(4)] == [4, 6, 9, 4]
    assert pin_to_cpu(0, Settings(control_enabled=False, cpu_pinning="on")) == 4
    off = Settings(**FLEET, workers=3, cpu_pinning="off")
    assert pin_to_cpu(0, off) is None
    assert cpus == [{4}, {6}, {9}, {4}, {4}]


def test_a_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu_pinning"):
        Settings(control_enabled=False, cpu_pinning="yes")


def test_pinning_sticks_for_threads_started_afterwards() -> None:
    """For real, in a child process: the model thread starts after pinning and inherits it."""
    usable = sorted(os.sched_getaffinity(0))
    script = (
        "import os, threading\n"
        "from service.run.affinity import pin_to_cpu\n"
        "from service.settings import Settings\n"
        "cpu = pin_to_cpu(1, Settings(control_enabled=False, cpu_pinning='on'))\n"
        "seen = []\n"
        "thread = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))\n"
        "thread.start(); thread.join()\n"
        "print(cpu, sorted(os.sched_getaffinity(0)), sorted(seen[0]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split(maxsplit=1)
    cpu = usable[1 % len(usable)]
    assert out == [str(cpu), f"[{cpu}] [{cpu}]\n"]
