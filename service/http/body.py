"""HTTP request bodies: read from ASGI under the size limit, Content-Encoding undone; and the
response's Content-Encoding. Both stacks (FastAPI routes and the fast path) read bodies here."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import Mapping

import numpy as np
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from service.codec import parse_header_length
from service.errors import BodyTimeout, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.http.connections import body_ready, bytes_held, wait_for_whole_body


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int,
                    deadline: float) -> bytes:
    """The body, refused with 413 as soon as it (or its decompressed form) passes `limit`, and
    with 504 if it is not complete by `deadline` (time.monotonic())."""
    chunks = await _receive(receive, headers, limit, deadline)
    return decode_content(chunks[0] if len(chunks) == 1 else b"".join(chunks),
                          headers.get("content-encoding"), limit)


async def read_binary_body(receive: Receive, headers: Mapping[str, str], limit: int,
                           header_length: str | None, deadline: float) -> bytes | memoryview:
    """`read_body` for a V2 request whose binary tensors start after the JSON header.

    The bytes are copied once, into a buffer where the first tensor byte sits on a 16-byte
    boundary, so np.frombuffer views the tensors without a second (aligning) copy.
    """
    offset = parse_header_length(header_length)
    if offset is None or headers.get("content-encoding") is not None:
        return await read_body(receive, headers, limit, deadline)
    chunks = await _receive(receive, headers, limit, deadline)
    size = sum(len(chunk) for chunk in chunks)
    storage = np.empty(size + 16, np.uint8)  # not zero-filled, unlike bytearray(n)
    pad = -(storage.ctypes.data + offset) % 16
    view = storage.data[pad:pad + size]
    start = 0
    for chunk in chunks:
        view[start:start + len(chunk)] = chunk
        start += len(chunk)
    return view


async def _receive(receive: Receive, headers: Mapping[str, str], limit: int,
                   deadline: float) -> list[bytes]:
    """The body's chunks, read from the ASGI messages directly (no async generator), within
    `deadline`: a client that stops sending mid-body is answered 504 instead of holding the
    request in flight forever.

    Only a wait needs the deadline's timer: a message uvicorn already holds (a small body
    arrives with its head) is taken as it is. The timer (asyncio.timeout_at, its TimerHandle and
    its cancellation) cost 26,700 of the 949,000 instructions of a one-row JSON request over
    HTTP (one worker under callgrind, requests 101-600 on one connection).
    """
    declared = headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit, f"{int(declared)} bytes")
    chunks: list[bytes] = []
    size = 0
    wait_for_whole_body(receive)  # one message instead of a piece per socket read
    while True:
        if body_ready(receive):
            message = await receive()  # already received: nothing to wait for, no timer
        else:
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(size + bytes_held(receive)) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit, f"more than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks


def _loop_time(deadline: float) -> float:
    """A time.monotonic() deadline on the running loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding gzip/deflate (as tritonclient sends) without inflating past `limit`.

    Several gzip members are one stream (RFC 1952) and are all decoded; anything else after the
    compressed data is refused, as it is after the JSON: it means the client sent what it did
    not mean to."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none"
        )
    parts: list[bytes] = []
    size, rest = 0, body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if name == "gzip" else zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as error:
            raise InvalidInput(f"request body is not valid {name} data ({error})") from None
        size += len(part)
        parts.append(part)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(limit, f"more than {limit} bytes after {name} decompression")
        if not inflater.eof:
            raise InvalidInput(f"request body is truncated {name} data")
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if name != "gzip" or not rest.startswith(b"\x1f\x8b"):
            raise InvalidInput(f"request body has {len(rest)} bytes after the {name} data; "
                               "send only the compressed body")


def compress(payload: bytes, accept_encoding: str | None) -> tuple[bytes, dict[str, str]]:
    """Compress a response when the client asked for gzip or deflate (tritonclient may)."""
    if not accept_encoding:
        return payload, {}
    accepted = {part.split(";")[0].strip().lower() for part in accept_encoding.split(",")}
    if "gzip" in accepted:
        return gzip.compress(payload, compresslevel=1), {"content-encoding": "gzip"}
    if "deflate" in accepted:
        return zlib.compress(payload, 1), {"content-encoding": "deflate"}
    return payload, {}
