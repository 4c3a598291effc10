"""README.md's examples, run as a reader runs them: every `bash` and `python` block, in order.

The rules, also stated at the top of README.md:
- Fenced blocks tagged `bash` or `python` run; any other tag (`console`, `text`) is shown only.
- `localhost:8000` becomes `localhost:<a free port>`, and the service gets that port (MLP_PORT);
  `localhost:8001` likewise for gRPC (MLP_GRPC_PORT).
- A `bash` line that starts the service (`mlp-serve` without --help/--version) runs in the
  background, as in a second terminal: the next block waits until /v2/health/ready answers 200,
  and the service is stopped (SIGTERM) when the next one starts and at the end.
- Any other `bash` block is one `bash -euo pipefail` script; `python` blocks run with this
  interpreter. A block fails when it exits non-zero or prints an `{"error": ...}` body.
- The working directory is a fresh folder holding `.venv` (this interpreter's environment),
  `samples/` and `training/configs/`, so models and runs the examples write land there.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.service.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN = ("bash", "python")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
STARTS_SERVICE = re.compile(r"(^|[\s/])mlp-serve(\s|$)(?!.*--(help|version))")
BLOCK_TIMEOUT_S = 600  # training the default preset on a busy 2-core machine fits well within


@dataclass(frozen=True)
class Block:
    """One fenced example: its tag, its text and the README line it starts on."""

    tag: str
    text: str
    line: int

    def starts_service(self) -> bool:
        return self.tag == "bash" and any(
            STARTS_SERVICE.search(line) for line in commands(self.text))


def commands(text: str) -> list[str]:
    """The non-blank, non-comment lines of a shell block."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def readme_blocks(text: str) -> list[Block]:
    return [Block(m[1], m[2], text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


class Service:
    """A service line of the README running in the background, in its own process group."""

    def __init__(self, line: str, cwd: Path, env: dict[str, str], port: int) -> None:
        self.line, self.port = line, port
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env, text=True,
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.ready = False

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            if self.process.poll() is not None:
                raise AssertionError(f"`{self.line}` exited ({self.process.returncode}):\n"
                                     + self.output())
            if time.monotonic() > deadline:
                raise AssertionError(f"`{self.line}` not ready in {timeout_s} s:\n" + self.output())
            try:
                url = f"http://127.0.0.1:{self.port}/v2/health/ready"
                self.ready = httpx.get(url, timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A reader's checkout, minus what the examples create: the venv, samples, presets."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "configs").symlink_to(ROOT / "training" / "configs")
    return tmp_path


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> None:
    argv = ["bash", "-euo", "pipefail", "-c"] if block.tag == "bash" else [sys.executable, "-c"]
    done = subprocess.run([*argv, block.text], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S)
    shown = f"README.md line {block.line} ({block.tag}):\n{block.text}\n--- output:\n"
    assert done.returncode == 0, shown + done.stdout + done.stderr
    assert '{"error"' not in done.stdout, shown + done.stdout


def test_rules_find_the_examples() -> None:
    """Guard against a parser that finds nothing and so passes vacuously."""
    blocks = readme_blocks(README.read_text())
    assert sum(b.tag == "bash" for b in blocks) >= 3
    assert sum(b.tag == "python" for b in blocks) >= 2
    assert sum(b.starts_service() for b in blocks) >= 1
    assert all(b.tag in (*RUN, "console", "text") for b in blocks), [b.tag for b in blocks]
    assert not Block("bash", ".venv/bin/mlp-serve --help\n", 1).starts_service()


@pytest.mark.slow
def test_every_example_runs_as_printed(workdir: Path, services: list[Service]) -> None:
    missing = [tool for tool in ("curl", "openssl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the README's examples need {', '.join(missing)}: "
                    f"apt-get install {' '.join(missing)}")
    port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
    env |= {"MLP_PORT": str(port), "MLP_GRPC_PORT": str(grpc_port), "PYTHONPATH": str(ROOT)}
    ran = 0
    for block in readme_blocks(README.read_text()):
        if block.tag not in RUN:
            continue
        text = block.text.replace("localhost:8000", f"localhost:{port}").replace(
            "localhost:8001", f"localhost:{grpc_port}")
        if block.starts_service():
            lines = commands(text)
            assert len(lines) == 1, f"README.md line {block.line}: start the service alone"
            for service in services:
                service.stop()
            services[:] = [Service(lines[0], workdir, env, port)]
            continue
        for service in services:
            service.wait_ready()
        run_block(Block(block.tag, text, block.line), workdir, env)
        ran += 1
    assert ran >= 5


def test_contents_lists_every_section() -> None:
    """Each `## ` section is in the table of contents, in order, with a working anchor."""
    text = README.read_text()
    outside_code = FENCE.sub("", text)
    sections = [line[3:] for line in outside_code.splitlines()
                if line.startswith("## ") and line != "## Contents"]
    listed = re.findall(r"^- \[(.+)\]\(#([^)]+)\)$", text, re.MULTILINE)
    assert [title for title, _ in listed] == sections

    def anchor(title: str) -> str:  # GitHub's rule: lower case, drop punctuation, spaces to -
        return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")

    assert [target for _, target in listed] == [anchor(title) for title in sections]
