"""Both images built from the working tree on a real engine, once per test session.

Where no engine can be had, every test here skips with one line saying why; in CI (CI=true),
where .ci/run starts one, a missing engine is an error instead, so this tier cannot silently
stop running.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers.engine import (
    MEASURED,
    ROOT,
    SERVICE_IMAGE,
    TRAIN_IMAGE,
    docker_client,
    engine_problem,
    inspect,
)

BUILD_TIMEOUT_S = 3000  # a cold build on a busy 2-core machine; a cached one takes seconds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Builds take minutes: these tests get their own generous timeout, not the suite's."""
    for item in items:
        if Path(item.path).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT_S + 900))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.write_line("containers: " + "; ".join(f"{k} {v}" for k, v in
                                                               MEASURED.items()))


@pytest.fixture(scope="session")
def engine() -> str:
    """The Docker client to use, once an engine answers."""
    problem = engine_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"{problem}: .ci/run should have started one")
    if problem:
        pytest.skip(f"{problem}; container tests need a Docker engine (see deploy/README.md)")
    return docker_client()


def airgap_build(engine: str, log: Path) -> dict[str, float]:
    """deploy/airgap-build.sh as a user runs it; seconds per image."""
    times = log.with_suffix(".times")
    times.unlink(missing_ok=True)
    env = os.environ | {"DOCKER": engine, "BUILD_TIMES": str(times),
                        "SERVICE_IMAGE": SERVICE_IMAGE, "TRAIN_IMAGE": TRAIN_IMAGE}
    with log.open("w") as output:
        result = subprocess.run(["nice", "-n", "10", str(ROOT / "deploy" / "airgap-build.sh")],
                                env=env, stdout=output, stderr=subprocess.STDOUT,
                                timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, log.read_text()[-3000:]
    return {tag: float(seconds) for tag, seconds in
            (line.split() for line in times.read_text().splitlines())}


@pytest.fixture(scope="session")
def images(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Both images, built twice: the second build must reuse every layer (same image ids)."""
    folder = tmp_path_factory.mktemp("build")
    started = time.monotonic()
    first = airgap_build(engine, folder / "first.log")
    ids = {tag: inspect(tag)["Id"] for tag in first}
    second = airgap_build(engine, folder / "second.log")
    assert {tag: inspect(tag)["Id"] for tag in second} == ids, "an unchanged tree rebuilt a layer"
    for tag in (SERVICE_IMAGE, TRAIN_IMAGE):
        size = inspect(tag)["Size"] / 1e6
        MEASURED[tag] = (f"{size:.0f} MB, built in {first[tag]:.0f} s "
                         f"(again, cached: {second[tag]:.0f} s)")
    MEASURED["both builds"] = f"{time.monotonic() - started:.0f} s"
    yield {"service": SERVICE_IMAGE, "train": TRAIN_IMAGE}

