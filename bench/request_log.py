"""What the per-request log line costs where it runs: in a worker serving one-row requests.

    .venv/bin/python bench/request_log.py [--requests 4000] [--rounds 5]

The service's own app (create_app, its lifespan, logging set-up and hot path) on the benchmark's
generated 784-256-10 model, driven in-process over ASGI by one client sending the one-row V2
JSON body bench/serve_load.py sends, so only the app's CPU is counted (no sockets, no HTTP
parsing). stderr goes to a file, as under systemd or a container runtime. Rounds alternate
between the `info` and `warning` levels of the request logger and the best round of each is
kept, so load from other work inflates both alike.

Why not time the line alone in a loop: there everything it touches stays in the CPU's caches,
and it came out at 9-10 µs; between the requests it follows it costs 2-3x that. Numbers, not
pass/fail: see README.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from serve_load import json_body, realistic_model, write_version

from service.http.app import create_app
from service.models.crowd import Crowd
from service.run.server import configure_logging
from service.settings import Settings

MODEL = "bench-mlp"


def asgi_request(body: bytes) -> tuple[dict[str, Any], Any, Any]:
    """Scope, receive and send of one POST .../infer as uvicorn hands it to the app."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": f"/v2/models/{MODEL}/infer",
             "raw_path": f"/v2/models/{MODEL}/infer".encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())], "state": {}}
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"answered {message['status']}")

    return scope, receive, send


async def cpu_us_per_request(app: Any, body: bytes, requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        Crowd.waiting += 1  # as the HTTP protocol counts a request once its head is parsed
        try:
            await app(*asgi_request(body))
        finally:
            Crowd.waiting -= 1
    return 1e6 * (time.process_time() - started) / requests


async def measure(app: Any, body: bytes, requests: int, rounds: int) -> dict[str, float]:
    request_logger = logging.getLogger("mlp_serve.request")
    best = {"info": float("inf"), "warning": float("inf")}
    async with app.router.lifespan_context(app):
        await cpu_us_per_request(app, body, requests)  # warm up
        for _ in range(rounds):
            for level in best:
                request_logger.setLevel(level.upper())
                best[level] = min(best[level], await cpu_us_per_request(app, body, requests))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, open(Path(work) / "stderr.log", "w") as log:
        repository = Path(work) / "models"
        folder = write_version(repository, MODEL, realistic_model())
        body = json_body(folder, 1).path.read_bytes()
        stderr = os.dup(2)
        os.dup2(log.fileno(), 2)  # the service logs to stderr; here stderr is a file
        try:
            configure_logging("info")
            app = create_app(Settings(repository=repository, control_enabled=False, workers=1))
            best = uvloop.run(measure(app, body, args.requests, args.rounds))
        finally:
            os.dup2(stderr, 2)
        lines = Path(log.name).read_text().count(" INFO mlp_serve.request: ")
    if lines < args.requests * args.rounds:
        raise SystemExit(f"expected a request line per request at info, found {lines}")
    line = best["info"] - best["warning"]
    print(f"one-row V2 JSON request in-process, app CPU: {best['warning']:.1f} µs without the "
          f"request line, {best['info']:.1f} µs with it; the line: {line:.1f} µs "
          f"({100 * line / best['info']:.0f}%; load average {os.getloadavg()[0]:.1f})",
          file=sys.stdout)


if __name__ == "__main__":
    main()
