"""Atomic publishing into the model repository: a version appears complete or not at all.

Files go into a hidden sibling folder `.tmp-<version>-<random>/`, are fsynced, and the folder is
renamed to `<version>/`. rename() of a directory onto an existing non-empty one fails, so two
publishers racing for the same number cannot both win: the loser retries with the next one.
"""

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TEMP_PREFIX = ".tmp-"
STALE_SECONDS = 3600  # a temp folder this old belongs to a killed run, not a live publisher
ATTEMPTS = 20
FOLDER_MODE = 0o755  # mkdtemp makes 0700; a service running as another user must read versions
FILE_MODE = 0o644  # whatever the trainer's umask, the files stay readable by the service
ARTIFACT_FILES = ("model.onnx", "model.json")  # what a version holds (docs/artifact.md)


class PublishError(Exception):
    """The repository could not take the new version; the message names the folder."""


def existing_versions(model_dir: Path) -> list[int]:
    """Positive integer folder names; anything else (temp folders, stray files) is ignored."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(entry.name) for entry in model_dir.iterdir()
        if entry.is_dir() and entry.name.isascii() and entry.name.isdigit() and int(entry.name) > 0
    )


def published_versions(repository: Path, name: str) -> list[int]:
    """Versions of `name` a reader can load: numbered folders that hold every artifact file.

    Temp folders never count (existing_versions skips them), nor does a numbered folder made by
    hand without both files. `mlp-train train --skip-if-published` asks this.
    """
    model_dir = Path(repository) / name
    return [
        version for version in existing_versions(model_dir)
        if all((model_dir / str(version) / file).is_file() for file in ARTIFACT_FILES)
    ]


def remove_stale_temp_folders(model_dir: Path, *, older_than: float = STALE_SECONDS) -> None:
    """Delete temp folders left by killed runs; young ones may belong to a live publisher."""
    now = time.time()
    for entry in model_dir.glob(f"{TEMP_PREFIX}*"):
        if entry.is_dir() and now - entry.stat().st_mtime > older_than:
            shutil.rmtree(entry, ignore_errors=True)


def _write_synced(path: Path, content: bytes) -> None:
    with open(path, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    path.chmod(FILE_MODE)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def publish(repository: Path, name: str, build_files: Callable[[int], dict[str, bytes]]) -> Path:
    """Write `build_files(version)` as the next version of `name`; return the new folder.

    `build_files` gets the version number because the files carry it (ONNX metadata, model.json)
    and is called again with a higher number if another publisher took that one first.
    """
    model_dir = Path(repository) / name
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PublishError(f"cannot create {model_dir}: {error.strerror}") from None
    remove_stale_temp_folders(model_dir)
    for _ in range(ATTEMPTS):
        versions = existing_versions(model_dir)
        version = versions[-1] + 1 if versions else 1
        temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{version}-", dir=model_dir))
        try:
            temp.chmod(FOLDER_MODE)
            for filename, content in build_files(version).items():
                _write_synced(temp / filename, content)
            _fsync_dir(temp)
            os.rename(temp, model_dir / str(version))
        except OSError as error:
            shutil.rmtree(temp, ignore_errors=True)
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue  # another publisher took this number first
            raise PublishError(f"cannot publish into {model_dir}: {error}") from None
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        _fsync_dir(model_dir)
        return model_dir / str(version)
    raise PublishError(f"gave up after {ATTEMPTS} attempts: {model_dir} keeps changing")
