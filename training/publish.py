"""Atomic publishing into the model repository: a version appears complete or not at all.

Files go into a hidden sibling folder `.tmp-<version>-<random>/`, are fsynced, and the folder is
renamed to `<version>/`. Publishers on one machine take turns: each holds an exclusive flock on
the model folder itself (no lock file to leave behind; the kernel drops it when a publisher dies)
while it picks a number and renames. rename() of a directory onto an existing non-empty one
fails, so a publisher that does not lock (another host on shared storage, a copy by hand) still
cannot overwrite a version: the loser retries with the next number.
"""

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from artifact.layout import TEMP_PREFIX, complete_versions, version_numbers
from artifact.names import is_version

STALE_SECONDS = 3600  # a temp folder this old belongs to a killed run, not a live publisher
ATTEMPTS = 20
LOCK_WAIT_SECONDS = 120.0  # a publish takes well under a second; longer means a stuck publisher
LOCK_POLL_SECONDS = 0.05
FOLDER_MODE = 0o755  # mkdtemp makes 0700; a service running as another user must read versions
FILE_MODE = 0o644  # whatever the trainer's umask, the files stay readable by the service


class PublishError(Exception):
    """The repository could not take the new version; the message names the folder."""


def existing_versions(model_dir: Path) -> list[int]:
    """Version folders as the service sees them (artifact/): temp folders, stray files and
    names such as `01` are not versions."""
    return version_numbers(model_dir)


def published_versions(repository: Path, name: str) -> list[int]:
    """Versions of `name` a reader can load: version folders that hold both artifact files.

    Temp folders never count, nor does a numbered folder made by hand without both files.
    `mlp-train train --skip-if-published` asks this.
    """
    return complete_versions(Path(repository) / name)


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


@contextlib.contextmanager
def _turn(model_dir: Path, wait_s: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the model folder's exclusive flock: one publisher at a time picks a number."""
    descriptor = os.open(model_dir, os.O_RDONLY)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PublishError(f"another publisher has held {model_dir} for over "
                                       f"{wait_s:.0f} s; nothing was written, try again") from None
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # releases the lock


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
    with _turn(model_dir):
        return _publish_next(model_dir, build_files)


def _publish_next(model_dir: Path, build_files: Callable[[int], dict[str, bytes]]) -> Path:
    """Write the next free version; retry with a higher number if someone took it meanwhile."""
    remove_stale_temp_folders(model_dir)
    for _ in range(ATTEMPTS):
        versions = existing_versions(model_dir)
        version = versions[-1] + 1 if versions else 1
        if not is_version(str(version)):
            raise PublishError(f"{model_dir} already holds version {versions[-1]}, the highest "
                               "the contract allows (18 digits); publish under a new name")
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
