"""A real Docker engine driven through its CLI: which client, is an engine there, run and wait.

DOCKER names the client (CI sets Debian's 20.10 client, which has BuildKit built in; a newer
client without the buildx plugin cannot build). Without it: Debian's /usr/bin/docker if present,
else `docker` on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVICE_IMAGE = "mlp-serve:0.1.0"  # the tags docker-compose.yml runs
TRAIN_IMAGE = "mlp-serve-train:0.1.0"
HOST_NETWORK = ROOT / "deploy" / "compose.host-network.yml"
# What the runs measured, printed at the end of the test session (conftest.py).
MEASURED: dict[str, str] = {}


def docker_client() -> str:
    """The client binary to use."""
    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def engine_problem() -> str | None:
    """Why no engine can be used here (one line), or None when client, daemon and compose answer."""
    client = docker_client()
    if shutil.which(client) is None:
        return f"no Docker client ({client})"
    info = subprocess.run([client, "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"no Docker engine answers ({client} info: {info.stderr.strip()[:120]})"
    compose = subprocess.run([client, "compose", "version"], capture_output=True, text=True,
                             timeout=60)
    if compose.returncode != 0:
        return f"no Compose v2 plugin ({client} compose version failed)"
    return None


def docker(*args: str, check: bool = True, timeout: float = 600,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the client; on failure (with check) the assertion shows the command and its stderr."""
    result = subprocess.run([docker_client(), *args], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=ROOT)
    if check:
        assert result.returncode == 0, (
            f"docker {' '.join(args)} exited {result.returncode}: "
            f"{(result.stderr or result.stdout)[-3000:]}")
    return result


def inspect(obj: str) -> dict[str, Any]:
    """`docker inspect` of one container or image."""
    (data,) = json.loads(docker("inspect", obj).stdout)
    return data


class Project:
    """One compose project over docker-compose.yml + the host-network overlay, on its own port
    and its own (so fresh) volume."""

    def __init__(self, name: str, port: int) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
        self.env |= {"MLP_PUBLISH_PORT": str(port)}

    def compose(self, *args: str, check: bool = True,
                timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return docker("compose", "-p", self.name, "-f", str(ROOT / "docker-compose.yml"),
                      "-f", str(HOST_NETWORK), *args, check=check, timeout=timeout, env=self.env)

    def container(self, service: str) -> str:
        """The id of the (possibly exited) container of a service."""
        ids = self.compose("ps", "-a", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def wait_healthy(self, timeout_s: float = 600) -> dict[str, Any]:
        """Poll Docker's own health status of `service` until healthy; its inspect data."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = inspect(self.container("service"))
            status = data["State"].get("Health", {}).get("Status")
            if status == "healthy":
                return data
            if status == "unhealthy" or data["State"]["Status"] == "exited":
                break
            time.sleep(1)
        logs = self.compose("logs", "--no-color", check=False).stdout[-3000:]
        raise AssertionError(f"service did not become healthy (status {status}): {logs}")


def seconds_between(start: str, end: str) -> float:
    """Seconds between two of Docker's RFC 3339 timestamps (nanosecond precision, UTC)."""
    def parse(stamp: str) -> float:
        whole, _, fraction = stamp.rstrip("Z").partition(".")
        base = datetime.fromisoformat(whole.split("+")[0]).timestamp()
        return base + float("0." + (fraction.split("+")[0] or "0"))
    return parse(end) - parse(start)


def run(image: str, *args: str, options: tuple[str, ...] = (),
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`docker run --rm` of a throwaway container with no network; the caller checks the result."""
    return docker("run", "--rm", "--network", "none", *options, image, *args, check=False,
                  timeout=timeout)
