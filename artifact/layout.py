"""What a repository holds: `<root>/<name>/<version>/` with the two files of a version, and the
tensors model.onnx must have. Entries that are not valid names or versions are not models or
versions (temp folders of a publish in progress, stray files): both halves skip them."""

from __future__ import annotations

import os
from pathlib import Path

from artifact.names import ArtifactError, is_name, is_version

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
    return sorted(entry.name for entry in list_folder(root, "model repository")
                  if entry.is_dir() and is_name(entry.name))


def version_numbers(model_dir: Path) -> list[int]:
    """Version folders of one model, ascending ([] when `model_dir` is not a folder)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(entry.name) for entry in list_folder(model_dir, "model folder")
                  if entry.is_dir() and is_version(entry.name))


def list_folder(folder: Path, what: str) -> list[Path]:
    """The entries of `folder`; a folder this process may not list is one ArtifactError naming
    it and the permission needed (not a traceback)."""
    try:
        return list(folder.iterdir())
    except PermissionError:
        raise ArtifactError(f"{what} {str(folder)!r} cannot be read: permission denied; "
                            + needs("read and execute (r-x) permission on the folder")) from None
    except OSError as error:
        raise ArtifactError(f"{what} {str(folder)!r} cannot be read: {error.strerror}") from None


def read_file(path: Path) -> bytes:
    """The bytes of a version's file: missing, and unreadable, each one ArtifactError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path.name} is missing") from None
    except PermissionError:
        raise ArtifactError(f"cannot read {path}: permission denied; " + needs(
            "read (r) permission on it and execute (x) on its folders")) from None
    except OSError as error:
        raise ArtifactError(f"cannot read {path}: {error.strerror}") from None


def needs(permission: str) -> str:
    """Who this process runs as and what it lacks, for a permission error."""
    return f"this process runs as uid {os.geteuid()} and needs {permission}"


def check_inside(path: Path, root: Path) -> None:
    """Refuse a version whose folder or files resolve (through symlinks) outside the repository
    root: only what is inside the repository is ever loaded. Symlinks within it are fine."""
    try:
        resolved, base = path.resolve(), root.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        raise ArtifactError(f"cannot resolve {path}: {error}") from None
    if not resolved.is_relative_to(base):
        raise ArtifactError(f"{path} resolves to {resolved}, outside the model repository "
                            f"{base}; a version and its files must be inside it (symlinks may "
                            "point only within the repository)")


def complete_versions(model_dir: Path) -> list[int]:
    """Version folders that hold both files: what a reader can try to load."""
    return [version for version in version_numbers(model_dir)
            if all((model_dir / str(version) / file).is_file() for file in FILES)]
