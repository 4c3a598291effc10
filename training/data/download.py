"""Fetch files from a list of mirrors into a cache folder, sha256-verified, written atomically."""

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from training.data.dataset import DataError

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_SHA256 = {  # verified against several independent published lists
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
CHUNK = 1 << 16


def _fetch(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Stream url into a temp file beside target, check its sha256, then rename into place."""
    digest = hashlib.sha256()
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise DataError(f"sha256 mismatch: expected {sha256}, got {digest.hexdigest()}")
        os.replace(temp_name, target)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        error.close()  # it holds the response socket open otherwise
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error)


def download(name: str, folder: Path, sha256: str, mirrors: Sequence[str], timeout: float) -> Path:
    """folder/name from the first mirror that serves it with the right sha256."""
    target = folder / name
    failures: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        try:
            _fetch(url, target, sha256, timeout)
            return target
        except (OSError, DataError) as error:  # URLError and HTTPError are OSErrors
            failures.append(f"  {url}: {_reason(error)}")
    raise DataError(
        f"could not download {name} into {folder}; every mirror failed:\n"
        + "\n".join(failures)
        + f"\nCheck the network, or put the file in {folder} yourself."
    )


def ensure_files(
    folder: Path,
    checksums: Mapping[str, str] | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = 60.0,
) -> None:
    """Download whichever of the named files the folder lacks; present files are reused as is.

    Defaults (the four MNIST files, the public mirrors) are read at call time, so tests can
    point them at a local server.
    """
    checksums = MNIST_SHA256 if checksums is None else checksums
    mirrors = MNIST_MIRRORS if mirrors is None else mirrors
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{folder}: cannot create the cache folder ({error})") from error
    for name, sha256 in checksums.items():
        if not (folder / name).is_file():
            download(name, folder, sha256, mirrors, timeout)
