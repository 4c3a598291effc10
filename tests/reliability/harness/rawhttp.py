"""HTTP/1.1 over raw sockets, as a hostile or careless client speaks it: bytes exactly as given
(no client library to fix up a header, a space or a length), answers read as they come, and
connections that can be held open, half-sent, for as long as a test wants.

Used by test_probe.py against a real `mlp-serve` process on 127.0.0.1 (the OpenAPI fuzzing runs
in-process, so only this reaches the server's HTTP parser and connection handling)."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

HOST = "127.0.0.1"


@dataclass
class RawAnswer:
    """One HTTP response: status, headers (lower-case names, last one wins), body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> object:
        return orjson.loads(self.body)

    def error(self) -> str:
        """The `error` text of a `{"error": ...}` body ('' when the body is not one)."""
        try:
            payload = self.json()
        except orjson.JSONDecodeError:
            return ""
        return str(payload.get("error", "")) if isinstance(payload, dict) else ""

    @property
    def closes(self) -> bool:
        """Whether the server said it closes the connection after this answer."""
        return "close" in self.headers.get("connection", "").lower()


class Closed(Exception):
    """The server closed (or reset) the connection before a complete answer arrived."""


def request_bytes(method: str, path: str, body: bytes = b"",
                  headers: Mapping[str, str | bytes] | None = None, *,
                  content_length: bool = True) -> bytes:
    """A request exactly as written: request line, headers (values sent verbatim, bytes or
    latin-1 text), Content-Length of `body` unless told not to, then the body."""
    lines = [f"{method} {path} HTTP/1.1".encode("latin-1"), b"Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name.encode("latin-1") + b": " + raw)
    if content_length and body is not None and method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class RawConnection:
    """One TCP connection to the server; send bytes, read whole answers."""

    def __init__(self, port: int, timeout_s: float = 30.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError) as error:
            raise Closed(f"reset: {error}") from None
        if not chunk:
            raise Closed("closed by the server")
        self.buffer += chunk

    def read_answer(self, head: bool = False) -> RawAnswer:
        """The next complete response (Content-Length or chunked body; none for HEAD)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        raw_head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = RawAnswer(int(status_line.split(" ")[1]), headers)
        if head:
            return answer
        if "content-length" in headers:
            size = int(headers["content-length"])
            while len(self.buffer) < size:
                self._fill()
            answer.body, self.buffer = self.buffer[:size], self.buffer[size:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            answer.body = self._read_chunked()
        return answer

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buffer:
                self._fill()
            size_line, self.buffer = self.buffer.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(self.buffer) < size + 2:
                self._fill()
            body, self.buffer = body + self.buffer[:size], self.buffer[size + 2:]
            if size == 0:
                return body

    def exchange(self, data: bytes, head: bool = False) -> RawAnswer:
        self.send(data)
        return self.read_answer(head)

    def is_closed_by_peer(self, wait_s: float) -> bool:
        """Whether the server closes this connection within `wait_s` (EOF or reset)."""
        self.sock.settimeout(wait_s)
        try:
            return self.sock.recv(1 << 16) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def exchange(port: int, data: bytes, timeout_s: float = 60.0, head: bool = False) -> RawAnswer:
    """Send `data` on a fresh connection and read one answer."""
    with RawConnection(port, timeout_s) as connection:
        return connection.exchange(data, head)


def timed_exchange(port: int, data: bytes, timeout_s: float = 60.0) -> tuple[RawAnswer, float]:
    """`exchange` and its wall time in seconds (for the figures, never asserted tightly)."""
    started = time.monotonic()
    answer = exchange(port, data, timeout_s)
    return answer, time.monotonic() - started
