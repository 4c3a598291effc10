"""What a repository holds: `<root>/<name>/<version>/` with the two files of a version, and the
tensors model.onnx must have. Entries that are not valid names or versions are not models or
versions (temp folders of a publish in progress, stray files): both halves skip them."""

from __future__ import annotations

from pathlib import Path

from artifact.names import is_name, is_version

ONNX_FILE = "model.onnx"
CARD_FILE = "model.json"
FILES = (ONNX_FILE, CARD_FILE)
TEMP_PREFIX = ".tmp-"  # a version being published: `.tmp-<version>-<random>/` beside the others
INPUT_NAME = "input"  # float32 [N, 784], raw pixels 0..255
PIXELS = 784
OUTPUT_NAMES = ("probabilities", "label")  # float32 [N, C] softmax, int64 [N] argmax


def model_names(root: Path) -> list[str]:
    """Folders of `root` with a valid model name, sorted ([] when `root` is not a folder)."""
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir()
                  if entry.is_dir() and is_name(entry.name))


def version_numbers(model_dir: Path) -> list[int]:
    """Version folders of one model, ascending ([] when `model_dir` is not a folder)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(entry.name) for entry in model_dir.iterdir()
                  if entry.is_dir() and is_version(entry.name))


def complete_versions(model_dir: Path) -> list[int]:
    """Version folders that hold both files: what a reader can try to load."""
    return [version for version in version_numbers(model_dir)
            if all((model_dir / str(version) / file).is_file() for file in FILES)]
