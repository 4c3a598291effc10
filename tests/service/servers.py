"""Real servers on 127.0.0.1 for tests: `mlp-serve` as a subprocess, or an app in a thread.

Reusable outside tests/service (`from tests.service.servers import ServerProcess`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from service.run.server import DrainingServer

API_KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`mlp-serve` in a subprocess on a free port; always stopped by the fixture."""

    def __init__(self, repo: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.repo = repo
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"  # host:port, as gRPC clients take it
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
        # One worker unless a test asks for more: the default (auto) runs one per CPU.
        environment |= {"MLP_REPOSITORY": str(repo), "MLP_API_KEY": API_KEY,
                        "MLP_PORT": str(self.port), "MLP_WORKERS": "1",
                        "MLP_GRPC_PORT": str(self.grpc_port)} | (env or {})
        # A file, not a pipe: a full pipe would block the server. Closed in stop().
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115
        script = Path(sys.executable).parent / "mlp-serve"  # the real console script
        self.process = subprocess.Popen([str(script), *(args or [])], env=environment,
                                        stdout=subprocess.DEVNULL, stderr=self.log, text=True)

    def stderr(self) -> str:
        """Everything the server logged so far."""
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Poll /v2/health/ready until 200 (or fail with the server's stderr)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early: {self.stderr()}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not become ready")

    def stop(self) -> tuple[int, str]:
        """Terminate (if still running) and return exit code and stderr."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        text = self.stderr()
        self.log.close()
        return self.process.returncode, text



@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[httpx.Client]:
    """Run `app` under uvicorn in a thread on a free 127.0.0.1 port; real HTTP, same process."""
    with _in_thread(app, uvicorn.Server) as (http, _):
        yield http


@contextmanager
def serve_both_in_thread(app: FastAPI) -> Iterator[tuple[httpx.Client, str]]:
    """Run `app` as `mlp-serve` serves it (DrainingServer: HTTP and gRPC in one loop) in a
    thread; an HTTP client and the gRPC target (host:port; settings.grpc_port 0: a free one)."""
    def draining(config: uvicorn.Config) -> uvicorn.Server:
        return DrainingServer(config, app.state.settings, app.state.lifecycle)

    def listening(server: uvicorn.Server) -> bool:
        return isinstance(server, DrainingServer) and server.grpc is not None

    with _in_thread(app, draining, listening) as (http, server):
        assert isinstance(server, DrainingServer) and server.grpc is not None
        yield http, f"127.0.0.1:{server.grpc.port}"


@contextmanager
def _in_thread(app: FastAPI, make: Callable[[uvicorn.Config], uvicorn.Server],
               listening: Callable[[uvicorn.Server], bool] = lambda server: server.started,
               ) -> Iterator[tuple[httpx.Client, uvicorn.Server]]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                            lifespan="on", access_log=False, log_config=None)
    server = make(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not listening(server):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("in-thread server did not start")
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http, server
    finally:
        server.should_exit = True
        thread.join(timeout=20)
