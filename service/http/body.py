"""HTTP request bodies: read from ASGI under the size limit, Content-Encoding undone; and the
response's Content-Encoding. Both stacks (FastAPI routes and the fast path) read bodies here."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping

import numpy as np
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from service.codec import parse_header_length
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The body, refused with 413 as soon as it (or its decompressed form) passes `limit`."""
    chunks = await _receive(receive, headers, limit)
    return decode_content(chunks[0] if len(chunks) == 1 else b"".join(chunks),
                          headers.get("content-encoding"), limit)


async def read_binary_body(receive: Receive, headers: Mapping[str, str], limit: int,
                           header_length: str | None) -> bytes | memoryview:
    """`read_body` for a V2 request whose binary tensors start after the JSON header.

    The bytes are copied once, into a buffer where the first tensor byte sits on a 16-byte
    boundary, so np.frombuffer views the tensors without a second (aligning) copy.
    """
    offset = parse_header_length(header_length)
    if offset is None or headers.get("content-encoding") is not None:
        return await read_body(receive, headers, limit)
    chunks = await _receive(receive, headers, limit)
    size = sum(len(chunk) for chunk in chunks)
    storage = np.empty(size + 16, np.uint8)  # not zero-filled, unlike bytearray(n)
    pad = -(storage.ctypes.data + offset) % 16
    view = storage.data[pad:pad + size]
    start = 0
    for chunk in chunks:
        view[start:start + len(chunk)] = chunk
        start += len(chunk)
    return view


async def _receive(receive: Receive, headers: Mapping[str, str], limit: int) -> list[bytes]:
    """The body's chunks, read from the ASGI messages directly (no async generator)."""
    declared = headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit, f"{int(declared)} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit, f"more than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding gzip/deflate (as tritonclient sends) without inflating past `limit`."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none"
        )
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if name == "gzip" else zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise InvalidInput(f"request body is not valid {name} data ({error})") from None
    if len(data) > limit:
        raise PayloadTooLarge(limit, f"more than {limit} bytes after {name} decompression")
    if not inflater.eof:
        raise InvalidInput(f"request body is truncated {name} data")
    return data


def compress(payload: bytes, accept_encoding: str | None) -> tuple[bytes, dict[str, str]]:
    """Compress a response when the client asked for gzip or deflate (tritonclient may)."""
    accepted = {part.split(";")[0].strip().lower() for part in (accept_encoding or "").split(",")}
    if "gzip" in accepted:
        return gzip.compress(payload, compresslevel=1), {"content-encoding": "gzip"}
    if "deflate" in accepted:
        return zlib.compress(payload, 1), {"content-encoding": "deflate"}
    return payload, {}
