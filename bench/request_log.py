"""What the per-request log line costs: RequestLog.start + finish at info vs warning level.

    .venv/bin/python bench/request_log.py [--requests 20000] [--rounds 7]

The service's own RequestLog, metrics and logging set-up; the log goes to a file (as under
systemd or a container runtime, stderr is a pipe or file, not a terminal). Rounds alternate
between the two levels and the best round of each is printed, so load from other work on the
machine inflates both alike. Numbers, not pass/fail: see README.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

from service.http.requestlog import RequestLog
from service.metrics import Metrics
from service.models.dataplane import Lifecycle
from service.run.server import configure_logging

SCOPE = {"type": "http", "method": "POST", "path": "/v2/models/mnist-mlp/infer",
         "headers": [(b"host", b"x"), (b"content-type", b"application/json")]}


def cpu_us_per_request(log: RequestLog, requests: int) -> float:
    t0 = time.process_time()
    for _ in range(requests):
        note = log.start(SCOPE)
        note["model"], note["version"] = "mnist-mlp", 1
        log.finish(SCOPE, note, "/v2/models/{name}/infer", 200)
    return 1e6 * (time.process_time() - t0) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".log") as file:
        stderr = os.dup(2)
        os.dup2(file.fileno(), 2)  # the service logs to stderr; here stderr is a file
        try:
            configure_logging("info")
            log = RequestLog(Metrics(), Lifecycle())
            request_logger = logging.getLogger("mlp_serve.request")
            best = {"info": float("inf"), "warning": float("inf")}
            for _ in range(args.rounds):
                for level in best:
                    request_logger.setLevel(level.upper())
                    best[level] = min(best[level], cpu_us_per_request(log, args.requests))
        finally:
            os.dup2(stderr, 2)
    line = best["info"] - best["warning"]
    print(f"request bookkeeping (metrics, ids) without the line: {best['warning']:.1f} µs CPU; "
          f"with the INFO line: {best['info']:.1f} µs; the line itself: {line:.1f} µs "
          f"(load average {os.getloadavg()[0]:.1f})", file=sys.stdout)


if __name__ == "__main__":
    main()
