"""The malloc thresholds: a request-sized buffer allocated and freed again reuses its pages."""

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.malloc import reuse_freed_memory
from tests.service.model_repo import write_model
from tests.service.servers import ServerProcess

# Allocate and free ~800 kB twice per round, as a 256-row request does with its body; print the
# minor page faults per round.
ROUNDS = """
import resource, sys
if sys.argv[1] == "tuned":
    from service.malloc import reuse_freed_memory
    assert reuse_freed_memory()
src = bytes(803065)
bytes(bytearray(src))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    bytes(bytearray(src))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 200)
"""


def faults_per_round(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True,
                          check=True, timeout=60)
    return float(done.stdout)


@pytest.mark.skipif(not reuse_freed_memory(), reason="the C library is not glibc")
def test_freed_request_buffers_are_reused_without_page_faults() -> None:
    default, tuned = faults_per_round("default"), faults_per_round("tuned")
    assert default > 100  # glibc's own thresholds: fresh pages each round (~400 faults here)
    assert tuned < 5


def minor_faults(pid: int) -> int:
    """Field 10 of /proc/<pid>/stat: the process's minor page faults so far."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[7])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_the_server_answers_big_json_requests_without_page_faults(tmp_path: Path) -> None:
    """mlp-serve as started (one worker: the process itself serves), 256-row JSON requests of
    ~1 MB: without the thresholds each cost ~470 faults (its body and tensor on fresh pages)."""
    write_model(tmp_path)
    rows = np.random.default_rng(0).integers(0, 256, (256, 784)).astype(float)
    body = {"inputs": [{"name": "input", "shape": [256, 784], "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}
    server = ServerProcess(tmp_path)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            def send() -> None:
                answer = client.post("/v2/models/mnist-mlp/infer", json=body)
                assert answer.status_code == 200, answer.text
            for _ in range(5):  # warm up: the heap grows to its working size once
                send()
            before = minor_faults(server.process.pid)
            for _ in range(20):
                send()
            per_request = (minor_faults(server.process.pid) - before) / 20
    finally:
        server.stop()
    assert per_request < 50, f"{per_request} minor page faults per request"
