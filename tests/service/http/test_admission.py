"""Admission on arrival, over real HTTP: a full queue refuses a request before its body is read,
and the deadline counts from arrival, so a slow upload is refused without reaching the model."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from pathlib import Path

from service.http.app import create_app
from tests.service.conftest import MODEL, HeldModel, held_settings, wait_until
from tests.service.servers import serve_in_thread

INFER = f"/v2/models/{MODEL}/infer"
BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                               "data": [0] * 784}]}).encode()


def send_head(port: int, length: int) -> socket.socket:
    """Open a connection and send a request's headers only; the body may follow later."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode())
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while True:
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", head, re.I)
        if length and len(body) >= int(length.group(1)):
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:])
            return int(lines[0].split(" ", 2)[1]), headers, body
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a full response: {data!r}"
        data += chunk


def test_full_queue_refuses_on_arrival_before_the_body_is_sent(repo: Path,
                                                               held: HeldModel) -> None:
    app = create_app(held_settings(repo, max_queue_rows=1, max_batch_size=1))
    with serve_in_thread(app) as client:
        port = client.base_url.port
        assert port is not None
        in_model = send_head(port, len(BODY))
        in_model.sendall(BODY)
        assert held.entered.wait(10)  # request 1 is in the model and holds it
        queued = send_head(port, len(BODY))
        queued.sendall(BODY)
        batcher = app.state.registry.get(MODEL).batcher
        wait_until(lambda: batcher.queue_rows == 1)  # request 2 fills the queue (bound 1)

        refused = send_head(port, len(BODY))  # request 3: headers only, no body yet
        status, headers, body = read_response(refused)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert json.loads(body) == {"error": "server busy: 1 rows are queued, at the limit of 1; "
                                             "retry after 1 s"}

        held.release.set()
        answers = [read_response(sock) for sock in (in_model, queued)]
        for sock in (in_model, queued, refused):
            sock.close()
    assert [status for status, _, _ in answers] == [200, 200]
    assert held.calls == 2  # the refused request never reached the model


def test_deadline_counts_from_arrival_so_a_slow_upload_gets_504_without_a_model_call(
    repo: Path, held: HeldModel
) -> None:
    held.release.set()
    app = create_app(held_settings(repo, request_timeout_ms=300))
    with serve_in_thread(app) as client:
        port = client.base_url.port
        assert port is not None
        slow = send_head(port, len(BODY))
        time.sleep(0.5)  # the upload alone outlasts the 300 ms deadline
        with contextlib.suppress(OSError):  # the 504 (and close) may come first
            slow.sendall(BODY)
        status, _, body = read_response(slow)
        slow.close()
        in_time = client.post(INFER, content=BODY)
    assert status == 504
    # The deadline covers the upload itself: the answer comes when it passes, not after.
    assert json.loads(body)["error"] == ("the request body was not complete within the request "
                                         "deadline (received 0 bytes; MLP_REQUEST_TIMEOUT_MS)")
    assert in_time.status_code == 200
    assert held.calls == 1  # only the request that arrived in time reached the model
