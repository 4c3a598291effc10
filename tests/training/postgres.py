"""A throwaway PostgreSQL server for tests: Debian's binaries, a cluster in a temp folder,
listening on 127.0.0.1 on a free port, stopped at the end. As root (CI) it runs as the
`postgres` user, since the server refuses to run as root."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 120


def server_bin() -> Path | None:
    """The newest installed /usr/lib/postgresql/<version>/bin with initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *command]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """postgresql://... of a fresh server with an empty database `sweeps`."""
    binaries = server_bin()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    # not under pytest's tmp folder: that is private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="mlp-serve-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    port = free_port()
    run = {"check": True, "capture_output": True, "timeout": START_TIMEOUT_S}
    subprocess.run(as_server_user([str(binaries / "initdb"), "-D", str(data), "-U", "sweep",
                                   "--auth=trust", "-E", "UTF8"]), **run)  # type: ignore[call-overload]
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run(as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-o", options,
                                   "-l", str(root / "server.log"), "-w", "-t",
                                   str(START_TIMEOUT_S), "start"]), **run)  # type: ignore[call-overload]
    try:
        subprocess.run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "sweep", "sweeps"], **run)  # type: ignore[call-overload]
        yield f"postgresql://sweep@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run(as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast",
                                       "-w", "stop"]), capture_output=True, timeout=60,
                       check=False)
        shutil.rmtree(root, ignore_errors=True)
