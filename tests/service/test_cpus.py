"""`--workers auto`: the CPUs this process may use, from its affinity mask and cgroup quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.cpus import cgroup_cpu_quota, usable_cpus
from service.settings import Settings

AFFINITY = len(os.sched_getaffinity(0))


def cgroup(tmp_path: Path, files: dict[str, str], own: str = "0::/\n") -> tuple[Path, Path]:
    """A fake cgroup mount under tmp_path and a /proc/self/cgroup naming our folder."""
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(own)
    return root, proc


@pytest.mark.parametrize(("files", "own", "quota"), [
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),  # v2, unlimited
    ({"cpu.max": "100000 100000\n"}, "0::/\n", 1.0),  # v2, docker --cpus 1 (seen at the root)
    ({"kubepods/pod1/cpu.max": "150000 100000\n"}, "0::/kubepods/pod1\n", 1.5),
    ({"kubepods/cpu.max": "50000 100000\n", "kubepods/pod1/cpu.max": "max 100000\n"},
     "0::/kubepods/pod1\n", 0.5),  # a parent's limit counts too
    ({"cpu,cpuacct/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     "2:cpu,cpuacct:/\n", 2.0),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", None),
    ({"cpu.max": "garbage\n"}, "0::/\n", None),
    ({}, "", None),  # no cgroup files at all (not Linux, or not mounted)
])
def test_cgroup_quota_v1_and_v2(tmp_path: Path, files: dict[str, str], own: str,
                                quota: float | None) -> None:
    root, proc = cgroup(tmp_path, files, own)
    assert cgroup_cpu_quota(root, proc) == quota


def test_usable_cpus_is_the_affinity_capped_by_the_quota_and_at_least_one(tmp_path: Path) -> None:
    assert usable_cpus(*cgroup(tmp_path / "a", {"cpu.max": "max 100000"})) == AFFINITY
    assert usable_cpus(*cgroup(tmp_path / "b", {"cpu.max": "100000 100000"})) == 1
    assert usable_cpus(*cgroup(tmp_path / "c", {"cpu.max": "20000 100000"})) == 1  # 0.2 CPU
    many = cgroup(tmp_path / "d", {"cpu.max": f"{100000 * (AFFINITY + 8)} 100000"})
    assert usable_cpus(*many) == AFFINITY


def test_workers_default_to_auto_and_a_number_still_wins() -> None:
    expected = usable_cpus()
    assert Settings(control_enabled=False).workers == expected
    assert Settings(control_enabled=False, workers="auto").workers == expected  # type: ignore[arg-type]
    assert Settings(control_enabled=False, workers=1).workers == 1
    assert Settings(control_enabled=False, port=0).workers == 1  # a random port is not shared
    assert Settings(control_enabled=False, grpc_port=0).workers == 1
    assert Settings.model_fields["workers"].default == "auto"


def test_workers_auto_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLP_WORKERS", "AUTO")
    assert Settings(control_enabled=False).workers == usable_cpus()
    monkeypatch.setenv("MLP_WORKERS", "1")
    assert Settings(control_enabled=False).workers == 1
