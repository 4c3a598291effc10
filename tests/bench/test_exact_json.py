"""bench/exact_json switches off the simdjson path in every interpreter that has it on
PYTHONPATH, so the benchmark's baseline for the 256-row JSON goal really is the exact path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import orjson
from service import codec
body = orjson.dumps({"inputs": [{"name": "input", "shape": [256, 784], "datatype": "FP32",
                                 "data": [float(i % 256) for i in range(256 * 784)]}]})
fast = codec._decode_fast(body)
request, tensors = codec.decode_inference_request(body, b"")
print("fast" if fast is not None else "exact", tensors["input"].shape)
"""


def decode_in_fresh_interpreter(*pythonpath: Path) -> str:
    env = os.environ | {"PYTHONPATH": os.pathsep.join(str(p) for p in (*pythonpath, ROOT))}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_256_row_body_takes_the_fast_path_by_default() -> None:
    assert decode_in_fresh_interpreter() == "fast (256, 784)"


def test_the_benchmark_baseline_takes_the_exact_path_for_the_same_body() -> None:
    assert decode_in_fresh_interpreter(ROOT / "bench" / "exact_json") == "exact (256, 784)"
