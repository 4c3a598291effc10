"""`mlp-serve --workers 2` as a real process tree: shared port, fleet metrics, clean stops,
model control that changes every worker together."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import http.client
import json
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_serve_process import raw_request, read_response
from tests.service.conftest import MODEL, pixels, reference
from tests.service.model_repo import write_model
from tests.service.servers import API_KEY, ServerProcess, free_port

INFER = f"/v2/models/{MODEL}/infer"
REQUESTS = 200
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CONTROL = ()  # mlp-serve arguments: control on (the key comes from ServerProcess's env)


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


def wait_for(state: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll until `state()` holds: a state, not a guessed sleep, so a loaded machine only makes
    the test slower, never wrong."""
    deadline = time.monotonic() + timeout_s
    while not state():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.02)


def server_sockets(port: int, states: tuple[str, ...] = ("01",)) -> list[tuple[int, int]]:
    """(remote port, bytes not yet read by the server) of each connection accepted on
    127.0.0.1:`port` in one of `states` (/proc/net/tcp: "01" established, the default; "08"
    close-wait: the client closed, the worker did not yet): shows whether a worker has read
    what was sent, or closed its end."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
        if state in states and int(local.split(":")[1], 16) == port:
            found.append((int(remote.split(":")[1], 16), int(queues.split(":")[1], 16)))
    return found


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
            # Request ids start with a random prefix per process (service/http/requestlog.py).
            answered_by.add(response.headers["x-request-id"][:16])
    assert len(answered_by) == 2

    time.sleep(0.6)  # one gauge refresh period: the other worker's in-flight reads 0 again
    scraped_from: set[str] = set()
    for _ in range(40):  # until both workers answered a scrape
        prefix, samples = fleet_samples(fleet.server.url)
        scraped_from.add(prefix)
        endpoint = (("endpoint", "/v2/models/{name}/infer"), ("model", MODEL),
                    ("protocol", "http"), ("status", "200"), ("version", "1"))
        assert samples[("mlp_requests_total", endpoint)] == REQUESTS
        assert samples[("mlp_inference_rows_total", (("model", MODEL), ("version", "1")))] == (
            REQUESTS)
        assert samples[("mlp_model_loaded_version", (("model", MODEL),))] == 1
        assert samples[("mlp_queue_rows", (("model", MODEL),))] == 0
        assert samples[("mlp_requests_in_flight", ())] >= 1  # the scrape itself, refreshed
        if len(scraped_from) == 2:
            break
    assert scraped_from == answered_by


def answering_worker(connection: http.client.HTTPConnection, row: np.ndarray,
                     expected_label: int) -> str:
    """POST one row on `connection` (kept open), check the answer; the answering worker's
    request-id prefix."""
    connection.request("POST", INFER, infer_body(row), {"Content-Type": "application/json"})
    response = connection.getresponse()
    body = response.read()
    assert response.status == 200, body
    outputs = {o["name"]: o["data"] for o in json.loads(body)["outputs"]}
    assert outputs["label"] == [expected_label]
    return str(response.getheader("x-request-id"))[:16]


def test_keep_alive_connections_are_spread_evenly_over_the_workers(
    fleets: list[Fleet], repo: Path,
) -> None:
    """The kernel's hash alone puts both of two connections on one worker half the time (and
    8 connections 4/4 only 27% of the time). Handed over, connections opened one after another
    alternate between the workers and keep their worker for later requests; closed ones free
    their places, which the next connections fill."""
    fleet = start(fleets, repo)
    fleet.wait_ready()
    port = fleet.server.port
    rows = pixels(11, seed=5)
    labels = reference(repo / MODEL / "1", rows)["label"]
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(8)]
    fresh = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(3)]
    try:
        # Each request is written as soon as its connection opens: it waits in the socket
        # while the accepting worker hands the connection over.
        first = [answering_worker(c, rows[i], labels[i]) for i, c in enumerate(connections)]
        assert sorted(collections.Counter(first).values()) == [4, 4], first
        again = [answering_worker(c, rows[i], labels[i]) for i, c in enumerate(connections)]
        assert again == first  # a connection moves once, right after it was accepted

        # Close three of one worker's connections: it then holds 1 against the other's 4.
        emptied = first[0]
        closing = [c for c, w in zip(connections, first, strict=True) if w == emptied][1:]
        client_ports = {c.sock.getsockname()[1] for c in closing if c.sock is not None}
        kept = next(c for c, w in zip(connections, first, strict=True) if w == emptied)
        for connection in closing:
            connection.close()
        wait_for(lambda: not {remote for remote, _ in server_sockets(port, ("01", "08"))}
                 & client_ports, "the worker closed its ends of three connections")
        # A round trip through that worker's event loop: its bookkeeping of the closed
        # connections (scheduled when it closed them) has run.
        assert answering_worker(kept, rows[8], labels[8]) == emptied
        # Wherever the kernel puts them, the next three go to the emptied worker.
        placed = [answering_worker(c, rows[8 + i], labels[8 + i]) for i, c in enumerate(fresh)]
        assert placed == [emptied] * 3
    finally:
        for connection in connections + fresh:
            connection.close()


def test_sigterm_drains_every_worker_then_exits_zero(fleets: list[Fleet], repo: Path) -> None:
    # Grace and request deadline far above the polling below: on a loaded machine the idle
    # worker may take seconds to exit, and the half-sent request must not expire meanwhile.
    fleet = start(fleets, repo, env={"MLP_SHUTDOWN_GRACE_S": "60",
                                     "MLP_REQUEST_TIMEOUT_MS": "60000"})
    workers = fleet.wait_ready()
    assert fleet.metrics_dir is not None and fleet.metrics_dir.is_dir()
    body = infer_body(pixels(1)[0])
    with contextlib.closing(raw_request(fleet.server.port, INFER, body)) as in_flight:
        in_flight.sendall(body[:1000])
        client_port = in_flight.getsockname()[1]
        # SIGTERM only once a worker has accepted the connection and read the head and the
        # first 1000 bytes: the request is then in flight in that worker.
        wait_for(lambda: (client_port, 0) in server_sockets(fleet.server.port),
                 "a worker read the start of the request")
        fleet.supervisor.send_signal(signal.SIGTERM)
        # The idle worker exits; the one reading the body waits for it, and so does the
        # supervisor.
        wait_for(lambda: [w.is_running() for w in workers].count(True) <= 1,
                 "the idle worker exited after SIGTERM")
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


@pytest.fixture(scope="module")
def control_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("control") / "models"
    write_model(root, MODEL, 1)
    write_model(root, MODEL, 2)
    return root


@pytest.fixture(scope="module")
def control_fleet(control_repo: Path) -> Iterator[Fleet]:
    """One fleet with control on, shared by the tests below; each sets the state it needs."""
    fleet = Fleet(control_repo, {"MLP_MODELS": f"{MODEL}:1"}, args=CONTROL)
    try:
        fleet.wait_ready()
        yield fleet
    finally:
        fleet.close()


def control(fleet: Fleet, op: str, version: int | None = None,
            headers: dict[str, str] = AUTH) -> httpx.Response:
    """POST load/unload (with parameters.version if given) on a fresh connection."""
    body = {} if version is None else {"parameters": {"version": version}}
    return httpx.post(f"{fleet.server.url}/v2/repository/models/{MODEL}/{op}", json=body,
                      headers={"Connection": "close", **headers}, timeout=30)


def answers(fleet: Fleet, count: int = 60) -> dict[str, set[str]]:
    """`count` inferences, each on a fresh connection: {answering process's request-id prefix:
    the model versions it answered with (or the HTTP status when not 200)}."""
    seen: dict[str, set[str]] = {}
    body = infer_body(pixels(1, seed=5)[0])
    with httpx.Client(base_url=fleet.server.url, timeout=10,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _ in range(count):
            response = client.post(INFER, content=body)
            answer = (response.json()["model_version"] if response.status_code == 200
                      else str(response.status_code))
            seen.setdefault(response.headers["x-request-id"][:16], set()).add(answer)
    return seen


def assert_every_worker_answers(fleet: Fleet, answer: str) -> None:
    seen = answers(fleet)
    assert len(seen) == 2, seen  # both workers answered
    assert all(found == {answer} for found in seen.values()), seen


def test_load_reaches_every_worker(control_fleet: Fleet) -> None:
    assert control(control_fleet, "load", 1).status_code == 200
    assert_every_worker_answers(control_fleet, "1")
    response = control(control_fleet, "load", 2)
    assert (response.status_code, response.json()) == (
        200, {"name": MODEL, "version": "2", "state": "READY"})
    assert_every_worker_answers(control_fleet, "2")
    for _ in range(10):  # the index answers from whichever worker takes the connection
        index = httpx.post(f"{control_fleet.server.url}/v2/repository/index",
                           headers={"Connection": "close", **AUTH}, json={"ready": True})
        assert index.json() == [{"name": MODEL, "version": "2", "state": "READY", "reason": ""}]


def test_corrupt_version_is_refused_by_every_worker(control_fleet: Fleet,
                                                    control_repo: Path) -> None:
    assert control(control_fleet, "load", 2).status_code == 200
    folder = write_model(control_repo, MODEL, 3)
    try:
        onnx = bytearray((folder / "model.onnx").read_bytes())
        onnx[len(onnx) // 2] ^= 0xFF  # one flipped byte: the sha256 in model.json no longer fits
        (folder / "model.onnx").write_bytes(bytes(onnx))
        response = control(control_fleet, "load", 3)
        assert response.status_code == 409
        message = response.json()["error"]
        assert message.startswith(f"model '{MODEL}' version 3 ({folder}): sha256 of model.onnx "
                                  "is "), message
        assert message.endswith("; the file is corrupt or was replaced")
        assert_every_worker_answers(control_fleet, "2")
    finally:
        shutil.rmtree(folder)


def test_unload_then_load_the_latest_again(control_fleet: Fleet) -> None:
    assert control(control_fleet, "load", 1).status_code == 200
    response = control(control_fleet, "unload")
    assert (response.status_code, response.json()) == (
        200, {"name": MODEL, "version": "1", "state": "UNAVAILABLE"})
    assert_every_worker_answers(control_fleet, "404")
    again = control(control_fleet, "unload")  # every worker refuses alike: one clear 404
    assert (again.status_code, again.json()) == (
        404, {"error": f"model '{MODEL}' is not loaded; loaded models: none"})
    response = control(control_fleet, "load")  # no version: the latest on disk, for all
    assert (response.status_code, response.json()["version"]) == (200, "2")
    assert_every_worker_answers(control_fleet, "2")


def test_swaps_under_load_drop_no_request(control_fleet: Fleet) -> None:
    body = infer_body(pixels(1, seed=6)[0])

    def hammer(requests: int) -> list[tuple[int, str]]:
        results = []
        with httpx.Client(base_url=control_fleet.server.url, timeout=30,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for _ in range(requests):
                response = client.post(INFER, content=body)
                results.append((response.status_code,
                                response.json().get("model_version", response.text)))
        return results

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(hammer, 40) for _ in range(3)]
        for version in (1, 2, 1, 2):
            assert control(control_fleet, "load", version).status_code == 200
        results = [item for future in futures for item in future.result(timeout=60)]
    assert {status for status, _ in results} == {200}, results
    assert {version for _, version in results} <= {"1", "2"}
    assert_every_worker_answers(control_fleet, "2")


def test_concurrent_loads_leave_every_worker_on_one_version(control_fleet: Fleet) -> None:
    """Loads arriving together on both workers run one after another on every worker, so
    whichever runs last, all workers serve the same version."""
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda v: control(control_fleet, "load", v), [1, 2] * 6))
    assert [r.status_code for r in responses] == [200] * 12
    seen = answers(control_fleet)
    assert len(seen) == 2 and len(set.union(*seen.values())) == 1, seen


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-0123456789"},
                                     {"X-API-Key": "nope"}])
def test_control_without_a_valid_key_changes_no_worker(control_fleet: Fleet,
                                                       headers: dict[str, str]) -> None:
    assert control(control_fleet, "load", 1).status_code == 200
    for op, version in (("load", 2), ("unload", None)):
        response = control(control_fleet, op, version, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "model control needs a valid API key: send "
                                   "'Authorization: Bearer <key>' or 'X-API-Key: <key>'"}
    assert_every_worker_answers(control_fleet, "1")


def test_sigterm_during_a_fleet_load_finishes_it_and_exits_zero(
    fleets: list[Fleet], control_repo: Path,
) -> None:
    """The supervisor and both workers are stopped (SIGSTOP) at the moments that put SIGTERM
    in the middle of a command: sent to every worker, applied by none yet."""
    # The heartbeat stall detector would SIGKILL a worker stopped for MLP_WORKER_STALL_S (10 s
    # by default); the suspensions below last a few seconds at most, so it is raised far above
    # them rather than racing it on a loaded machine. Grace and deadline likewise.
    fleet = start(fleets, control_repo, env={
        "MLP_MODELS": f"{MODEL}:1", "MLP_WORKER_STALL_S": "300", "MLP_SHUTDOWN_GRACE_S": "60",
        "MLP_REQUEST_TIMEOUT_MS": "60000"}, args=CONTROL)
    workers = fleet.wait_ready()
    frozen: list[psutil.Process] = [fleet.supervisor]
    # What can be observed is polled; the steps inside a process that cannot be (a write on a
    # pipe, the supervisor's next loop turn) get SETTLE_S, several times what they need on a
    # machine at load 15, harmless since nothing times out for minutes.
    settle_s = 2.0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            fleet.supervisor.suspend()
            pending = pool.submit(control, fleet, "load", 2)
            # a worker accepted the request and read all of it ...
            wait_for(lambda: any(unread == 0 for _, unread in server_sockets(fleet.server.port)),
                     "a worker read the load request")
            time.sleep(settle_s)  # ... and sent it to the (stopped) supervisor
            frozen += workers
            for worker in workers:
                worker.suspend()
            wait_for(lambda: all(w.status() == psutil.STATUS_STOPPED for w in workers),
                     "both workers stopped")
            fleet.supervisor.resume()
            time.sleep(settle_s)  # the supervisor sent the command to both (stopped) workers
            fleet.supervisor.send_signal(signal.SIGTERM)
            time.sleep(settle_s)  # and forwarded SIGTERM to them
            assert not pending.done()
        finally:
            for process in frozen:
                process.resume()
        response = pending.result(timeout=20)
    assert (response.status_code, response.json()["version"]) == (200, "2")
    assert fleet.exit_code() == 0
    assert fleet.left_behind() == []
    assert fleet.server.stderr().count("shutting down: not ready") == 2
