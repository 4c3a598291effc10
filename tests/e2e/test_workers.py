"""`mlp-serve --workers 2` as a real process tree: shared port, fleet metrics, clean stops."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_serve_process import raw_request, read_response
from tests.service.conftest import MODEL, pixels, reference
from tests.service.model_repo import write_model
from tests.service.servers import ServerProcess, free_port

INFER = f"/v2/models/{MODEL}/infer"
REQUESTS = 200


def infer_body(row: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                                   "data": row.tolist()}]}).encode()


class Fleet:
    """One supervisor with two workers; `close()` stops it and kills anything it left."""

    def __init__(self, repo: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ("--no-control",)) -> None:
        self.server = ServerProcess(repo, env={"MLP_SHUTDOWN_GRACE_S": "5", **(env or {})},
                                    args=["--workers", "2", *args])
        self.supervisor = psutil.Process(self.server.process.pid)
        self.tree: list[psutil.Process] = []
        self.metrics_dir: Path | None = None

    def wait_ready(self, timeout_s: float = 30.0) -> list[psutil.Process]:
        """Wait for the supervisor's ready line; its two workers."""
        deadline = time.monotonic() + timeout_s
        while "ready: 2 workers" not in self.server.stderr():
            if self.server.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"fleet not ready: {self.server.stderr()}")
            time.sleep(0.05)
        self.tree = self.supervisor.children(recursive=True)
        workers = [p for p in self.tree if "spawn_main" in " ".join(p.cmdline())]
        self.metrics_dir = Path(workers[0].environ()["PROMETHEUS_MULTIPROC_DIR"])
        return workers

    def exit_code(self, timeout_s: float = 20.0) -> int:
        return self.server.process.wait(timeout=timeout_s)

    def left_behind(self) -> list[psutil.Process]:
        """Processes of the tree still running a while after the supervisor is gone."""
        return psutil.wait_procs(self.tree, timeout=10)[1]

    def close(self) -> None:
        self.server.stop()
        for process in self.tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()  # psutil checks the pid still names the same process
        if self.metrics_dir is not None:  # left only by a supervisor killed with SIGKILL
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workers") / "models"
    write_model(root, MODEL, 1)
    return root


@pytest.fixture
def fleets() -> Iterator[list[Fleet]]:
    """Fleets a test starts; all stopped at teardown, even when the test failed."""
    started: list[Fleet] = []
    yield started
    for fleet in started:
        fleet.close()


def start(fleets: list[Fleet], repo: Path, env: dict[str, str] | None = None,
          args: tuple[str, ...] = ("--no-control",)) -> Fleet:
    fleet = Fleet(repo, env, args)
    fleets.append(fleet)
    return fleet


def fleet_samples(url: str) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Scrape /metrics over a fresh connection: (answering process's request-id prefix,
    samples)."""
    response = httpx.get(url + "/metrics", headers={"Connection": "close"})
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text)
               for s in family.samples}
    return response.headers["x-request-id"][:16], samples


def test_two_workers_serve_one_port_and_every_scrape_reports_the_fleet(
    fleets: list[Fleet], repo: Path,
) -> None:
    fleet = start(fleets, repo)
    workers = fleet.wait_ready()
    assert len(workers) == 2
    usable = sorted(psutil.Process().cpu_affinity() or [])
    affinities = [w.cpu_affinity() for w in workers]
    if len(usable) == 2:  # one worker per usable CPU: cpu_pinning=auto pins each to its own
        assert sorted(affinities) == [[usable[0]], [usable[1]]]
    else:
        assert affinities == [usable, usable]
    ready = next(line for line in fleet.server.stderr().splitlines() if "ready: 2" in line)
    assert f"(pids {workers[0].pid}, {workers[1].pid}) serving {MODEL} on " in ready

    rows = pixels(REQUESTS, seed=3)
    expected = reference(repo / MODEL / "1", rows)
    answered_by = set()
    # No keep-alive: every request is a new connection, which the kernel may give either worker.
    with httpx.Client(base_url=fleet.server.url, timeout=10,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for i in range(REQUESTS):
            response = client.post(INFER, content=infer_body(rows[i]))
            assert response.status_code == 200, response.text
            outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
            assert outputs["label"] == [expected["label"][i]]
            np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"][i],
                                       rtol=1e-6)
            # Request ids start with a random prefix per process (service/logging.py).
            answered_by.add(response.headers["x-request-id"][:16])
    assert len(answered_by) == 2

    time.sleep(0.6)  # one gauge refresh period: the other worker's in-flight reads 0 again
    scraped_from: set[str] = set()
    for _ in range(40):  # until both workers answered a scrape
        prefix, samples = fleet_samples(fleet.server.url)
        scraped_from.add(prefix)
        endpoint = (("endpoint", "/v2/models/{name}/infer"), ("model", MODEL),
                    ("status", "200"), ("version", "1"))
        assert samples[("mlp_requests_total", endpoint)] == REQUESTS
        assert samples[("mlp_inference_rows_total", (("model", MODEL), ("version", "1")))] == (
            REQUESTS)
        assert samples[("mlp_model_loaded_version", (("model", MODEL),))] == 1
        assert samples[("mlp_queue_rows", (("model", MODEL),))] == 0
        assert samples[("mlp_requests_in_flight", ())] >= 1  # the scrape itself, refreshed
        if len(scraped_from) == 2:
            break
    assert scraped_from == answered_by


def test_sigterm_drains_every_worker_then_exits_zero(fleets: list[Fleet], repo: Path) -> None:
    fleet = start(fleets, repo)
    workers = fleet.wait_ready()
    assert fleet.metrics_dir is not None and fleet.metrics_dir.is_dir()
    body = infer_body(pixels(1)[0])
    with contextlib.closing(raw_request(fleet.server.port, INFER, body)) as in_flight:
        in_flight.sendall(body[:1000])
        time.sleep(0.3)
        fleet.supervisor.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # The idle worker is gone; the one reading the body waits for it, and so does the
        # supervisor.
        assert [worker.is_running() for worker in workers].count(True) == 1
        assert fleet.server.process.poll() is None
        in_flight.sendall(body[1000:])
        status, answer = read_response(in_flight)
    assert status == 200 and json.loads(answer)["model_version"] == "1"
    assert fleet.exit_code() == 0
    assert fleet.left_behind() == []
    assert not fleet.metrics_dir.exists()
    assert fleet.server.stderr().count("shutting down: not ready") == 2


def test_a_killed_worker_stops_the_fleet_non_zero(fleets: list[Fleet], repo: Path) -> None:
    fleet = start(fleets, repo)
    workers = fleet.wait_ready()
    victim = workers[1]
    victim.send_signal(signal.SIGKILL)
    assert fleet.exit_code() == 1
    assert fleet.left_behind() == []
    lines = fleet.server.stderr().splitlines()
    named = [line for line in lines if f"(pid {victim.pid})" in line]
    assert len(named) == 1
    assert named[0].endswith(f"mlp_serve: worker 1 (pid {victim.pid}) was killed by SIGKILL "
                             "while serving; stopping the other workers")


def test_workers_exit_when_the_supervisor_is_killed(fleets: list[Fleet], repo: Path) -> None:
    fleet = start(fleets, repo)
    fleet.wait_ready()
    fleet.supervisor.send_signal(signal.SIGKILL)
    fleet.exit_code()
    assert fleet.left_behind() == []


def test_bad_repository_fails_once_with_one_line(fleets: list[Fleet], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    fleet = start(fleets, tmp_path / "empty")
    assert fleet.exit_code() == 3  # uvicorn's start-up failure code, as with one process
    lines = fleet.server.stderr().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].split(" mlp_serve: ", 1)[1] == (
        f"cannot start: model repository '{tmp_path / 'empty'}' holds no models; train one "
        "first (mlp-train train) or point MLP_REPOSITORY at one")


def test_taken_port_fails_with_one_line(fleets: list[Fleet], repo: Path) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        fleet = start(fleets, repo, env={"MLP_PORT": str(port)})
        assert fleet.exit_code() == 1
    assert fleet.server.stderr().splitlines()[0].split(" mlp_serve: ", 1)[1] == (
        f"cannot start: cannot listen on 127.0.0.1:{port}: Address already in use; stop what "
        "listens there or choose another --port (MLP_PORT)")


def test_control_with_several_workers_is_refused(fleets: list[Fleet], repo: Path) -> None:
    fleet = start(fleets, repo, args=())
    assert fleet.exit_code() == 2
    assert fleet.server.stderr().splitlines() == [
        "mlp-serve: invalid setting: model control needs one worker: it would change only the "
        "worker a request reaches; run with --workers 1 to use control, or --no-control "
        "(MLP_CONTROL_ENABLED=false) with several workers"]
