"""A real `mlp-serve` process on 127.0.0.1: start it with settings in the environment, wait
until it is ready, and always stop it by its PID (never by name), so tests exercise the exact
binary users run, with real sockets, signals and memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"


def venv_script(name: str) -> Path:
    """The console script `name` of the project's virtualenv (the one running pytest)."""
    candidates = [ROOT / ".venv" / "bin" / name, Path(sys.executable).parent / name]
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(f"{name} not found in {candidates}; run `make install` first")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(settings: dict[str, str]) -> dict[str, str]:
    """The current environment without any inherited MLP_* variable, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
    env.update(settings)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class ServerProcess:
    """One running `mlp-serve`; `log_path` holds its stdout+stderr for failure messages."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_bytes(self) -> int:
        """Resident memory of the server and any children it forked, in bytes."""
        parent = psutil.Process(self.pid)
        procs = [parent, *parent.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll /v2/health/ready until it answers 200; fail with the log if the process dies."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mlp-serve exited with {self.proc.returncode} before it was ready:\n"
                        f"{self.log()}"
                    )
                try:
                    if client.get("/v2/health/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"mlp-serve not ready after {timeout_s} s:\n{self.log()}")

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; reap leftover children by PID too."""
        if self.proc.poll() is None:
            try:
                children = psutil.Process(self.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            for child in children:
                if child.is_running():
                    child.kill()
        return self.proc.returncode


def start_server(
    settings: dict[str, str], log_path: Path, port: int | None = None,
    prefix: Sequence[str] = (),
) -> ServerProcess:
    """Launch `.venv/bin/mlp-serve` with MLP_* `settings` (host and port filled in); `prefix`
    runs it through another command (e.g. setpriv to run as another user)."""
    port = port or free_port()
    # One worker unless the test asks for more: the default (auto) runs one per CPU.
    env = clean_env({"MLP_HOST": HOST, "MLP_PORT": str(port), "MLP_WORKERS": "1",
                     "MLP_GRPC_PORT": str(free_port()), **settings})
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [*prefix, str(venv_script("mlp-serve"))],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=log_path.parent,
    )
    log.close()
    return ServerProcess(proc=proc, port=port, log_path=log_path)


def run_to_exit(
    settings: dict[str, str], timeout_s: float = 30.0, prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `mlp-serve` expecting it to refuse to start; returns its exit code and output."""
    env = clean_env({"MLP_HOST": HOST, "MLP_PORT": str(free_port()),
                     "MLP_GRPC_PORT": str(free_port()), **settings})
    return subprocess.run(
        [*prefix, str(venv_script("mlp-serve"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
