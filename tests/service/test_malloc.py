"""The malloc thresholds: a request-sized buffer allocated and freed again reuses its pages."""

import subprocess
import sys

import pytest

from service.malloc import reuse_freed_memory

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
