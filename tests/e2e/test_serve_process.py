"""`mlp-serve` as a real process: start-up failures, ready line, SIGTERM drain, streaming 413,
a big body trickled in."""

from __future__ import annotations

import json
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.model_repo import write_model
from tests.service.servers import ServerProcess

MODEL = "mnist-mlp"
ROW = json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                              "data": [7] * 784}]}).encode()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_model(tmp_path / "models", MODEL, 1)
    return tmp_path / "models"


@pytest.fixture
def started(request: pytest.FixtureRequest, repo: Path) -> Iterator[ServerProcess]:
    env = getattr(request, "param", {})
    process = ServerProcess(repo, env={"MLP_MAX_BODY_BYTES": "100000", **env})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def exit_of(process: ServerProcess) -> tuple[int, list[str]]:
    process.process.wait(timeout=30)
    code, text = process.stop()
    return code, text.splitlines()


@pytest.mark.parametrize(("setup", "env", "message"), [
    ("missing", {}, "cannot start: model repository '{repo}' is not a folder; train a model "
     "first (mlp-train train) or point MLP_REPOSITORY / --repository at one"),
    ("empty", {}, "cannot start: model repository '{repo}' holds no models; train one first "
     "(mlp-train train) or point MLP_REPOSITORY at one"),
    ("tampered", {}, "cannot start: model 'mnist-mlp' version 1 ({repo}/mnist-mlp/1): sha256 of "
     "model.onnx is "),
    ("ok", {"MLP_MODELS": "mnist-mlp:4"}, "cannot start: model 'mnist-mlp' version 4 is not "
     "loaded; no folder '{repo}/mnist-mlp/4'"),
])
def test_start_up_failure_is_one_line_and_non_zero(tmp_path: Path, setup: str,
                                                   env: dict[str, str], message: str) -> None:
    repo = tmp_path / "models"
    if setup in ("empty", "tampered", "ok"):
        repo.mkdir()
    if setup in ("tampered", "ok"):
        folder = write_model(repo, MODEL, 1)
    if setup == "tampered":
        (folder / "model.onnx").write_bytes(b"\0" + (folder / "model.onnx").read_bytes())
    code, lines = exit_of(ServerProcess(repo, env=env))
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].split(" mlp_serve: ", 1)[1].startswith(message.format(repo=repo))
    assert "Traceback" not in lines[0]


def test_weak_api_key_refuses_start(repo: Path) -> None:
    code, lines = exit_of(ServerProcess(repo, env={"MLP_API_KEY": "changeme"}))
    assert code == 2
    assert lines == ["mlp-serve: invalid setting: MLP_API_KEY must be a random string of at "
                     "least 16 characters when model control is enabled (got 8 characters or a "
                     "placeholder); set one, e.g. MLP_API_KEY=$(openssl rand -hex 24), or "
                     "disable control with MLP_CONTROL_ENABLED=false / --no-control"]


def test_ready_line_curl_gets_a_prediction_and_requests_log_one_line(
    started: ServerProcess,
) -> None:
    ready = next(line for line in started.stderr().splitlines() if "ready: serving" in line)
    command = ready.split("from the repository's folder, try: ", 1)[1]
    output = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30,
                            check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    prediction = json.loads(output)["predictions"][0]
    assert set(prediction) == {"label", "class_name", "probabilities"}
    httpx.post(f"{started.url}/v2/models/{MODEL}/infer", content=ROW,
               headers={"X-Request-ID": "trace-42"})
    time.sleep(0.2)
    lines = [line for line in started.stderr().splitlines() if "trace-42" in line]
    assert len(lines) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO mlp_serve.request: "
                        r"POST /v2/models/mnist-mlp/infer 200 [\d.]+ms "
                        r"model=mnist-mlp version=1 request_id=trace-42", lines[0])
    assert '"data"' not in started.stderr()


def raw_request(port: int, path: str, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                 "\r\n".encode())
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    sock.settimeout(10)
    while True:
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", head, re.I)
        if length and len(body) >= int(length.group(1)):
            return int(head.split(b" ", 2)[1]), body
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a full response: {data!r}")
        data += chunk


@pytest.mark.parametrize("started", [{"MLP_SHUTDOWN_GRACE_S": "10"}], indirect=True)
def test_sigterm_drains_in_flight_then_exits_zero(started: ServerProcess) -> None:
    # A request whose body is half sent is in flight when SIGTERM arrives.
    in_flight = raw_request(started.port, f"/v2/models/{MODEL}/infer", ROW)
    in_flight.sendall(ROW[:1000])
    time.sleep(0.3)
    started.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = httpx.get(f"{started.url}/v2/health/ready")
    assert (ready.status_code, ready.json()) == (
        503, {"error": "server is not ready: shutting down"})
    refused = httpx.post(f"{started.url}/v2/models/{MODEL}/infer", content=ROW)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json() == {"error": "server is shutting down; send the request to another "
                                       "replica"}
    assert started.process.poll() is None  # still waiting for the in-flight request
    in_flight.sendall(ROW[1000:])
    status, body = read_response(in_flight)
    in_flight.close()
    assert status == 200 and json.loads(body)["model_version"] == "1"
    started.process.wait(timeout=10)
    assert started.process.returncode == 0


def stuck_request(server: ServerProcess) -> socket.socket:
    """A request whose client sends 10 bytes of its body and then nothing: never answerable."""
    stuck = raw_request(server.port, f"/v2/models/{MODEL}/infer", ROW)
    stuck.sendall(ROW[:10])
    time.sleep(0.2)
    return stuck


@pytest.mark.parametrize("started", [{"MLP_SHUTDOWN_GRACE_S": "1"}], indirect=True)
def test_sigterm_gives_up_on_a_stuck_client_after_the_grace(started: ServerProcess) -> None:
    stuck = stuck_request(started)
    began = time.monotonic()
    started.process.send_signal(signal.SIGTERM)
    started.process.wait(timeout=10)
    assert time.monotonic() - began < 2.5  # 1 s of grace, then a prompt exit
    assert started.process.returncode == 0
    stuck.close()
    log = started.stderr()
    assert "shutdown grace of 1 s is over: cutting off 1 in-flight requests" in log
    assert "Traceback" not in log  # one line says it, not a CancelledError traceback


@pytest.mark.parametrize("started", [{"MLP_SHUTDOWN_GRACE_S": "10"}], indirect=True)
def test_second_sigterm_exits_at_once_with_one_line(started: ServerProcess) -> None:
    stuck = stuck_request(started)
    began = time.monotonic()
    started.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started.process.send_signal(signal.SIGTERM)
    started.process.wait(timeout=10)
    assert time.monotonic() - began < 3  # not the 10 s grace
    stuck.close()
    log = started.stderr()
    assert "second signal: exiting now, cutting off 1 in-flight requests" in log
    assert "Traceback" not in log


def test_body_limit_is_enforced_while_streaming(started: ServerProcess) -> None:
    """A chunked upload with no Content-Length is cut off at the limit, not buffered whole."""
    sock = socket.create_connection(("127.0.0.1", started.port))
    sock.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    sent = 0
    while sent < 100_000_000:
        readable, writable, _ = select.select([sock], [sock], [], 5)
        if readable:
            break
        if writable:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 16384
    status, body = read_response(sock)
    sock.close()
    assert status == 413
    assert json.loads(body) == {"error": "request body is more than 100000 bytes, over the limit "
                                "of 100000 bytes (MLP_MAX_BODY_BYTES); send fewer rows per "
                                "request or use the binary tensor format"}
    assert sent < 10_000_000


@pytest.mark.parametrize("started", [{"MLP_MAX_BODY_BYTES": "2000000"}], indirect=True)
def test_a_big_body_sent_in_pieces_is_answered_as_when_sent_at_once(
        started: ServerProcess) -> None:
    """256 binary rows (803 kB) trickled in eight pieces: the server holds the pieces for the
    app until the body is whole (service/http/connections.py) and answers exactly as for the
    same body sent in one go."""
    rows = np.random.default_rng(3).integers(0, 256, (256, 784)).astype(np.float32)
    header = json.dumps({"inputs": [{"name": "input", "shape": [256, 784], "datatype": "FP32",
                                     "parameters": {"binary_data_size": rows.nbytes}}]}).encode()
    body = header + rows.tobytes()

    def post(pieces: int) -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", started.port)) as sock:
            sock.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\n"
                         f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream"
                         f"\r\nInference-Header-Content-Length: {len(header)}\r\n\r\n".encode())
            size = -(-len(body) // pieces)
            for start in range(0, len(body), size):
                sock.sendall(body[start:start + size])
                time.sleep(0.05)
            return read_response(sock)

    at_once, in_pieces = post(1), post(8)
    assert at_once[0] == in_pieces[0] == 200
    assert json.loads(in_pieces[1]) == json.loads(at_once[1])
    assert json.loads(at_once[1])["outputs"][0]["shape"][0] == 256


@pytest.mark.parametrize("started", [{"MLP_KEEP_ALIVE_S": "2"}], indirect=True)
def test_idle_keep_alive_connection_stays_open_for_keep_alive_s_then_closes(
    started: ServerProcess,
) -> None:
    """A server that closed idle connections as soon as clients expire theirs (httpx: 5 s,
    uvicorn's old default: 5 s) would race a client reusing one; keep_alive_s sets the window."""
    path = f"/v2/models/{MODEL}/infer"
    sock = raw_request(started.port, path, ROW)
    sock.sendall(ROW)
    assert read_response(sock)[0] == 200
    time.sleep(1.0)  # idle, inside the 2 s window: the same connection still serves
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(ROW)}\r\n\r\n".encode()
                 + ROW)
    assert read_response(sock)[0] == 200
    sock.settimeout(10)
    started_idle = time.monotonic()
    assert sock.recv(1) == b""  # then the server closes it, after about keep_alive_s
    assert 1.5 < time.monotonic() - started_idle < 5
    sock.close()
