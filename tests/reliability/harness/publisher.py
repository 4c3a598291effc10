"""Run as a subprocess by test_publish_crash: publish versions of a real ONNX model in a loop
with `training.publish.publish`, so a SIGKILL at a random moment lands inside a publish.

Usage: python -m tests.reliability.harness.publisher <repository> <name> <count>
Prints "ready" once imports are done, then one line per published version."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.service.model_repo import build_onnx, card
from training.publish import publish


def build_files(name: str, version: int) -> dict[str, bytes]:
    """model.onnx and model.json of `version` (a real ONNX file, as the service expects)."""
    onnx_bytes = build_onnx(10, version, name=name, version=version)
    return {"model.onnx": onnx_bytes,
            "model.json": json.dumps(card(name, version, onnx_bytes, 10)).encode()}


def main(repository: str, name: str, count: int) -> None:
    print("ready", flush=True)
    for _ in range(count):
        folder = publish(Path(repository), name, lambda version: build_files(name, version))
        print(f"published {folder.name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
