"""What a reader of the model repository sees: every version folder the service's scan lists
must be complete (both files, sha256 matching the card) and must load in the real service code."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

from service.models.repository import ModelRepository


def version_problem(folder: Path) -> str:
    """'' when `folder` holds model.onnx and model.json whose sha256 and version agree."""
    try:
        onnx_bytes = (folder / "model.onnx").read_bytes()
        card = json.loads((folder / "model.json").read_bytes())
    except (OSError, ValueError) as error:
        return f"{folder}: {type(error).__name__}: {error}"
    actual = hashlib.sha256(onnx_bytes).hexdigest()
    if card.get("onnx", {}).get("sha256") != actual:
        return f"{folder}: sha256 {actual} != card {card.get('onnx', {}).get('sha256')}"
    if card.get("version") != int(folder.name):
        return f"{folder}: card version {card.get('version')} in folder {folder.name}"
    return ""


def service_scan_problems(root: Path, name: str) -> list[str]:
    """Load every version the service's scan lists with the service's own loader."""
    repository = ModelRepository(root)
    problems = []
    for version in repository.versions(name):
        problem = version_problem(root / name / str(version))
        if problem:
            problems.append(problem)
            continue
        try:
            repository.load(name, version)
        except Exception as error:  # any failure is a finding; keep the message
            problems.append(f"version {version}: service refused it: {error}")
    return problems


class Watcher:
    """Background thread: lists the model folder every millisecond and checks each version
    folder the moment it first appears, to catch a half-written version however briefly seen."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.seen: set[str] = set()
        self.problems: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                entries = os.listdir(self.model_dir)
            except FileNotFoundError:
                entries = []
            self.scans += 1
            for entry in entries:
                if entry.isdigit() and entry not in self.seen:
                    self.seen.add(entry)
                    problem = version_problem(self.model_dir / entry)
                    if problem:
                        self.problems.append(f"seen half-written: {problem}")
            time.sleep(0.001)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
