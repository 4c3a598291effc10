"""The mnist download against a local HTTP server: mirrors in order, sha256 checked, atomic cache.

No test touches the internet: every mirror is on 127.0.0.1, and the real mirror list is replaced
by a dead local address for the whole module.
"""

import gzip
import hashlib
import http.server
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from training.data import DataError, download, load_dataset
from training.data.download import ensure_files

NAMES = tuple(download.MNIST_SHA256)


def dead_url() -> str:
    """An address on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


@pytest.fixture(autouse=True)
def no_real_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "MNIST_MIRRORS", (dead_url(),))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@dataclass
class Mirror:
    """A local server: `routes` maps request paths to bytes; `requests` records every GET."""

    base: str
    routes: dict[str, bytes]
    requests: list[str] = field(default_factory=list)

    def url(self, prefix: str) -> str:
        return f"{self.base}/{prefix}/"


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    routes: dict[str, bytes] = {}
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # a short poll interval makes shutdown() return in milliseconds instead of 0.5 s
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Mirror(f"http://127.0.0.1:{server.server_port}", routes, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def idx_gz(array: np.ndarray) -> bytes:
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_files(make_images) -> dict[str, bytes]:
    """Tiny stand-ins for the four MNIST files: 20 train and 10 test digits, labels 0..9."""
    y_train, y_test = np.arange(20) % 10, np.arange(10)
    return {
        NAMES[0]: idx_gz(make_images(y_train, 1)),
        NAMES[1]: idx_gz(y_train),
        NAMES[2]: idx_gz(make_images(y_test, 2)),
        NAMES[3]: idx_gz(y_test),
    }


def sha256s(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def serve(mirror: Mirror, prefix: str, files: dict[str, bytes]) -> None:
    mirror.routes.update({f"/{prefix}/{name}": data for name, data in files.items()})


def test_download_then_cache_reuse(tmp_path: Path, mirror: Mirror, mnist_files) -> None:
    serve(mirror, "m1", mnist_files)
    ensure_files(tmp_path, sha256s(mnist_files), [mirror.url("m1")])
    assert sorted(mirror.requests) == sorted(f"/m1/{name}" for name in NAMES)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == mnist_files
    ensure_files(tmp_path, sha256s(mnist_files), [mirror.url("m1")])
    data = load_dataset("mnist", cache_dir=tmp_path)
    assert len(mirror.requests) == 4  # the second call and the load made no request
    assert data.x_train.shape == (20, 784) and data.x_test.shape == (10, 784)
    assert data.class_names == tuple("0123456789")


def test_load_dataset_downloads_into_cache_dir(
    tmp_path: Path, mirror: Mirror, mnist_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(mirror, "m1", mnist_files)
    monkeypatch.setattr(download, "MNIST_MIRRORS", (mirror.url("m1"),))
    monkeypatch.setattr(download, "MNIST_SHA256", sha256s(mnist_files))
    cache = tmp_path / "nested" / "cache"
    data = load_dataset("mnist", cache_dir=cache)
    assert np.array_equal(data.x_test[:, 0], np.arange(10))
    assert sorted(p.name for p in cache.iterdir()) == sorted(NAMES)


def test_first_mirror_down_second_used(tmp_path: Path, mirror: Mirror, mnist_files) -> None:
    serve(mirror, "m2", mnist_files)
    ensure_files(tmp_path, sha256s(mnist_files), [dead_url(), mirror.url("gone"), mirror.url("m2")])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == mnist_files
    assert [r for r in mirror.requests if r.startswith("/m2/")] == [f"/m2/{n}" for n in NAMES]


def test_checksum_mismatch_is_an_error_and_nothing_is_cached(
    tmp_path: Path, mirror: Mirror, mnist_files
) -> None:
    tampered = {**mnist_files, NAMES[1]: idx_gz(np.zeros(20))}
    serve(mirror, "bad", tampered)
    expected, got = sha256s(mnist_files)[NAMES[1]], sha256s(tampered)[NAMES[1]]
    with pytest.raises(DataError) as caught:
        ensure_files(tmp_path, sha256s(mnist_files), [mirror.url("bad")])
    message = str(caught.value)
    assert message.startswith(f"could not download {NAMES[1]} into {tmp_path}; every mirror")
    assert (
        f"{mirror.url('bad')}{NAMES[1]}: sha256 mismatch: expected {expected}, got {got}" in message
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAMES[0]]  # no bad file, no temp file


def test_bad_mirror_then_good_mirror(tmp_path: Path, mirror: Mirror, mnist_files) -> None:
    serve(mirror, "bad", {name: b"not the file" for name in NAMES})
    serve(mirror, "good", mnist_files)
    ensure_files(tmp_path, sha256s(mnist_files), [mirror.url("bad"), mirror.url("good")])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == mnist_files


def test_every_mirror_failing_lists_each_reason(tmp_path: Path, mirror: Mirror) -> None:
    down = dead_url()
    with pytest.raises(DataError) as caught:
        ensure_files(tmp_path, {"f.gz": "0" * 64}, [down, mirror.url("none")])
    message = str(caught.value)
    assert re.search(rf"{re.escape(down)}f\.gz: .*[Cc]onnection refused", message)
    assert f"{mirror.url('none')}f.gz: HTTP 404" in message
    assert message.endswith(f"Check the network, or put the file in {tmp_path} yourself.")
    assert list(tmp_path.iterdir()) == []
