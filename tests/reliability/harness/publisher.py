"""Run as a subprocess by test_publish_crash: publish versions of a real ONNX model in a loop
with `training.publish.publish`, so a SIGKILL at a random moment lands inside a publish.

Usage: python -m tests.reliability.harness.publisher <repository> <name> <count> [build_s]
Prints "ready" once imports are done, then one line per published version. `build_s` makes
each build take that long, as a real training run's export and card do (the window in which
another publisher can take the number)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.service.model_repo import build_onnx, card
from training.publish import publish


def build_files(name: str, version: int) -> dict[str, bytes]:
    """model.onnx and model.json of `version` (a real ONNX file, as the service expects)."""
    onnx_bytes = build_onnx(10, version, name=name, version=version)
    return {"model.onnx": onnx_bytes,
            "model.json": json.dumps(card(name, version, onnx_bytes, 10)).encode()}


def main(repository: str, name: str, count: int, build_s: float = 0.0) -> None:
    print("ready", flush=True)

    def slow_build(version: int) -> dict[str, bytes]:
        time.sleep(build_s)
        return build_files(name, version)

    for _ in range(count):
        folder = publish(Path(repository), name, slow_build)
        print(f"published {folder.name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]),
         float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
