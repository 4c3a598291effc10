"""Hypothesis strategies for requests to the inference endpoints: V2 JSON tensors of random
shapes, datatypes and nesting, extreme numbers and NaN, the binary tensor extension with
right and wrong lengths, KServe V1 instances, and plain garbage.

Each drawn `FuzzRequest` says whether it is `valid` (then the server must answer 200 with
onnxruntime's result for `rows`) or `invalid` (then a 4xx `{"error": ...}`); `None` means any
non-5xx answer is acceptable because the protocol leaves it open."""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote

import numpy as np
from hypothesis import strategies as st

FEATURES = 784
V2_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16"]
BINARY_HEADER = "Inference-Header-Content-Length"
EXTREME_FLOATS = [0.0, -0.0, 1e-45, -1e-45, 5e-324, 1e-38, 255.0, 255.5, 256.0, -1.0,
                  3.4e38, -3.4e38, 1e300, -1e300, 2.0**53, 1e-300]


@dataclass
class FuzzRequest:
    """One HTTP request to send, and what a correct server does with it."""

    kind: str
    path: str
    body: bytes
    headers: dict[str, str | bytes] = field(default_factory=dict)
    valid: bool | None = None
    rows: np.ndarray | None = None

    def describe(self) -> str:
        return (f"{self.kind} POST {self.path} headers={self.headers} "
                f"body[:300]={self.body[:300]!r} ({len(self.body)} bytes)")


def _rows(seed: int, n: int, fill: float | None) -> np.ndarray:
    """`n` rows of 784 pixels: random 0..255 from `seed`, or every pixel `fill`."""
    if fill is not None:
        return np.full((n, FEATURES), fill, dtype=np.float64)
    return np.random.default_rng(seed).integers(0, 256, size=(n, FEATURES)).astype(np.float64)


def _nest(flat: list[object], shape: list[int]) -> object:
    """Nest a flat list along `shape` (the V2 spec allows nested data)."""
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


JSON_HEADERS: dict[str, str | bytes] = {"content-type": "application/json"}
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@st.composite
def garbage_json(draw: st.DrawFn, paths: st.SearchStrategy[str]) -> FuzzRequest:
    """Any JSON value, or a V2-looking object with random fields."""
    body = draw(st.one_of(
        json_values,
        st.fixed_dictionaries({"inputs": json_values}, optional={"outputs": json_values,
                                                                  "parameters": json_values,
                                                                  "id": json_values}),
    ))
    return FuzzRequest("garbage-json", draw(paths),
                       json.dumps(body).encode(), dict(JSON_HEADERS))


@st.composite
def random_tensor(draw: st.DrawFn, paths: st.SearchStrategy[str]) -> FuzzRequest:
    """A structurally V2 request with random name, shape, datatype and data."""
    shape = draw(st.lists(st.integers(-3, 2**40) | st.integers(0, 800), min_size=0, max_size=4))
    data_kind = draw(st.sampled_from(["numbers", "strings", "mixed", "nested-wrong", "empty"]))
    if data_kind == "numbers":
        data: object = draw(st.lists(st.floats(allow_nan=False) | st.integers(-(2**64), 2**64),
                                     max_size=20))
    elif data_kind == "strings":
        data = draw(st.lists(st.text(max_size=6), max_size=10))
    elif data_kind == "mixed":
        data = draw(st.lists(scalars, max_size=10))
    elif data_kind == "nested-wrong":
        data = draw(st.lists(st.lists(st.integers(0, 255), max_size=5), max_size=5))
    else:
        data = []
    tensor = {
        "name": draw(st.sampled_from(["input", "INPUT", "", "probabilities"])
                     | st.text(max_size=6)),
        "shape": shape,
        "datatype": draw(st.sampled_from(V2_DATATYPES) | st.text(max_size=5)),
        "data": data,
    }
    body = {"inputs": draw(st.lists(st.just(tensor), min_size=1, max_size=2))}
    # An exact [n, 784] FP32 "input" with n*784 numbers is the only valid form; everything
    # drawn here has <= 20 numbers, so it is invalid unless it is an empty batch.
    return FuzzRequest("random-tensor", draw(paths),
                       json.dumps(body).encode(), dict(JSON_HEADERS))


@st.composite
def shaped_tensor(draw: st.DrawFn, paths: st.SearchStrategy[str]) -> FuzzRequest:
    """A [n, 784] "input" tensor: in-range pixels (valid) or extreme / non-finite values."""
    n = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    mode = draw(st.sampled_from(["pixels", "pixels", "extreme", "nan", "inf", "off-by-one"]))
    fill = draw(st.sampled_from(EXTREME_FLOATS)) if mode == "extreme" else None
    rows = _rows(seed, n, fill)
    pixels = rows.astype(np.int64) if fill is None else rows
    flat: list[object] = pixels.ravel().tolist()
    valid: bool | None = True
    shape = [n, FEATURES]
    if mode == "nan":
        flat[draw(st.integers(0, len(flat) - 1))] = float("nan")
        valid = False
    elif mode == "inf":
        infinity = draw(st.sampled_from([float("inf"), float("-inf")]))
        flat[draw(st.integers(0, len(flat) - 1))] = infinity
        valid = False
    elif mode == "off-by-one":
        flat = flat[:-1] if draw(st.booleans()) else [*flat, 0]
        valid = False
    elif mode == "extreme":
        valid = None  # out-of-range pixels: accepting or refusing are both defensible
    nested = draw(st.booleans())
    data = _nest(flat, shape) if nested and mode != "off-by-one" else flat
    datatype = "FP32" if valid is not False else draw(st.sampled_from(["FP32", "FP64"]))
    body = {"id": str(seed), "inputs": [{"name": "input", "shape": shape, "datatype": datatype,
                                         "data": data}]}
    return FuzzRequest(f"shaped-{mode}", draw(paths),
                       json.dumps(body, allow_nan=True).encode(), dict(JSON_HEADERS),
                       valid=valid, rows=rows if valid else None)


@st.composite
def binary_tensor(draw: st.DrawFn, paths: st.SearchStrategy[str]) -> FuzzRequest:
    """Binary tensor extension: JSON header + raw little-endian bytes, lengths right or wrong."""
    n = draw(st.integers(1, 3))
    rows = _rows(draw(st.integers(0, 2**32 - 1)), n, None)
    datatype = draw(st.sampled_from(["FP32", "FP32", "FP32", "FP64", "UINT8", "INT64", "BYTES"]))
    dtype = {"FP32": "<f4", "FP64": "<f8", "UINT8": "u1", "INT64": "<i8", "BYTES": "u1"}[datatype]
    raw = rows.astype(dtype).tobytes()
    declared = len(raw)
    defect = draw(st.sampled_from(["none", "none", "declared+1", "declared-1", "truncated",
                                   "extra-bytes", "header-len-wrong", "header-len-huge",
                                   "header-len-negative", "header-len-text", "no-size"]))
    if defect == "declared+1":
        declared += 1
    elif defect == "declared-1":
        declared -= 1
    elif defect == "truncated":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif defect == "extra-bytes":
        raw += draw(st.binary(min_size=1, max_size=16))
    params = {} if defect == "no-size" else {"binary_data_size": declared}
    header = json.dumps({"inputs": [{"name": "input", "shape": [n, FEATURES],
                                     "datatype": datatype, "parameters": params}]}).encode()
    header_len: str | bytes = str(len(header))
    if defect == "header-len-wrong":
        header_len = str(len(header) + draw(st.sampled_from([-5, -1, 1, 7])))
    elif defect == "header-len-huge":
        header_len = str(draw(st.sampled_from([len(header) + len(raw) + 1, 2**63, 10**30])))
    elif defect == "header-len-negative":
        header_len = "-1"
    elif defect == "header-len-text":
        # Latin-1 bytes such as b"\xb2" decode to '²', for which str.isdigit() is True.
        # (No leading/trailing spaces: h11 refuses to send those at all.)
        header_len = draw(st.sampled_from(["abc", "", "1e3", "1 2", "+12", "0x10", b"\xb2",
                                           b"\xb9\xb2"]))
    headers: dict[str, str | bytes] = {"content-type": "application/octet-stream",
                                       BINARY_HEADER: header_len}
    valid: bool | None = defect == "none" and datatype == "FP32"
    if defect == "none" and datatype in {"FP64", "UINT8", "INT64"}:
        valid = None  # a server may convert other numeric types or refuse them
    return FuzzRequest(f"binary-{datatype}-{defect}", draw(paths),
                       header + raw, headers, valid=valid, rows=rows if valid else None)


@st.composite
def v1_instances(draw: st.DrawFn, name: str) -> FuzzRequest:
    """KServe V1 predict: valid instances, wrong lengths, or random JSON."""
    mode = draw(st.sampled_from(["valid", "short-row", "garbage"]))
    rows = _rows(draw(st.integers(0, 2**32 - 1)), draw(st.integers(1, 3)), None)
    if mode == "valid":
        body: object = {"instances": rows.astype(np.int64).tolist()}
    elif mode == "short-row":
        body = {"instances": [rows[0, : draw(st.integers(0, FEATURES - 1))].tolist()]}
    else:
        body = draw(json_values)
    valid = {"valid": True, "short-row": False, "garbage": None}[mode]
    return FuzzRequest(f"v1-{mode}", f"/v1/models/{name}:predict", json.dumps(body).encode(),
                       dict(JSON_HEADERS), valid=valid, rows=rows if valid else None)


@st.composite
def raw_garbage(draw: st.DrawFn, paths: st.SearchStrategy[str]) -> FuzzRequest:
    """Bytes that are not JSON at all, with a random content type."""
    body = draw(st.binary(max_size=64) | st.sampled_from([b"", b"{", b'{"inputs": [', b"\xff\xfe",
                                                          b"null", b"[]", b'"x"']))
    ctype = draw(st.sampled_from(["application/json", "text/plain", "application/octet-stream",
                                  "multipart/form-data"]))
    return FuzzRequest("raw-garbage", draw(paths), body, {"content-type": ctype})


# Version path segments: odd spellings of numbers, and Unicode digits (str.isdigit() accepts
# '²' and '١', int() accepts only the latter).
odd_versions = st.sampled_from(["0", "01", "-1", "+1", "1.0", "1e3", " 1", "99999999999999999999",
                                "²", "١", "1²", "%2e%2e"]) | st.text(
    st.characters(categories=["Nd", "No"]), min_size=1, max_size=3)


# --- Extremes: shapes, header values, encodings and datatypes at and past their limits ------

EXTREME_DIMS = [0, 1, 2, 784, 2**31 - 1, 2**31, 2**32, 2**53, 2**62, 2**63 - 1, 2**63, 2**64,
                10**30, -1, -(2**63)]


@st.composite
def extreme_shape(draw: st.DrawFn, paths: st.SearchStrategy[str]) -> FuzzRequest:
    """Shapes with huge, zero and negative dimensions and up to 100 of them, in JSON or binary;
    none can be served (a shape with a 0 next to 2^63 once made numpy raise: 500)."""
    shape = draw(st.lists(st.sampled_from(EXTREME_DIMS), min_size=0, max_size=4)
                 | st.lists(st.sampled_from([0, 1]), min_size=9, max_size=100))
    binary = draw(st.booleans())
    tensor: dict[str, object] = {"name": "input", "shape": shape,
                                 "datatype": draw(st.sampled_from(["FP32", "UINT8", "INT64"]))}
    if binary:
        tensor["parameters"] = {"binary_data_size": 0}
        header = json.dumps({"inputs": [tensor]}).encode()
        return FuzzRequest("extreme-shape-binary", draw(paths), header,
                           {"content-type": "application/octet-stream",
                            BINARY_HEADER: str(len(header))}, valid=False)
    tensor["data"] = draw(st.sampled_from([[], [0], [[]], [[0] * 3]]))
    return FuzzRequest("extreme-shape-json", draw(paths), json.dumps({"inputs": [tensor]}).encode(),
                       dict(JSON_HEADERS), valid=False)


@st.composite
def extreme_header(draw: st.DrawFn, paths: st.SearchStrategy[str]) -> FuzzRequest:
    """A valid one-row request with extreme header values: thousands of digits (Python's
    int() refuses past 4,300), leading zeros, Unicode digits; odd encodings and request ids."""
    rows = _rows(draw(st.integers(0, 2**32 - 1)), 1, None)
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32",
                                   "data": rows.astype(np.int64).ravel().tolist()}]}).encode()
    which = draw(st.sampled_from(["length", "encoding", "request-id"]))
    valid: bool | None = True
    headers: dict[str, str | bytes] = dict(JSON_HEADERS)
    if which == "length":
        digits = draw(st.sampled_from([19, 20, 100, 4300, 4301, 10_000]))
        headers[BINARY_HEADER] = draw(st.sampled_from(["9", "0", "1"])) * digits
        valid = False
    elif which == "encoding":
        name = draw(st.sampled_from(["br", "x-gzip", "gzip, gzip", "compress", "zstd", "GZIP",
                                     "identity"]))
        headers["content-encoding"] = name
        valid = True if name == "identity" else None  # "GZIP" is gzip to case-blind readers; a
        # trailing space would be refused by the client library (h11) before it is sent
        if name.strip().lower() == "gzip":
            body = gzip.compress(body)
    else:
        ids: list[str | bytes] = ["a" * 129, "a" * 10_000, b"\xc3\xbc", "x y", "a\tb"]
        headers["x-request-id"] = draw(st.sampled_from(ids))
    return FuzzRequest(f"extreme-header-{which}", draw(paths), body, headers, valid=valid,
                       rows=rows if valid else None)


@st.composite
def encoded_body(draw: st.DrawFn, paths: st.SearchStrategy[str]) -> FuzzRequest:
    """gzip/deflate bodies, clean or with what hides a client bug after the compressed data:
    trailing garbage, a second member of junk, a truncated stream. Several gzip members are one
    stream (RFC 1952) and valid."""
    rows = _rows(draw(st.integers(0, 2**32 - 1)), draw(st.integers(1, 2)), None)
    plain = json.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                    "datatype": "FP32",
                                    "data": rows.astype(np.int64).ravel().tolist()}]}).encode()
    encoding = draw(st.sampled_from(["gzip", "deflate"]))
    pack = gzip.compress if encoding == "gzip" else zlib.compress
    defect = draw(st.sampled_from(["none", "trailing", "junk-member", "truncated",
                                   "two-members"]))
    body = pack(plain)
    valid: bool | None = False
    if defect == "none":
        valid = True
    elif defect == "trailing":
        body += draw(st.binary(min_size=1, max_size=16))
    elif defect == "junk-member":
        body += b"\x1f\x8b\x08\x00" + draw(st.binary(min_size=0, max_size=16))
    elif defect == "truncated":
        body = body[: draw(st.integers(1, len(body) - 1))]
    elif encoding == "gzip":
        cut = draw(st.integers(1, len(plain) - 1))
        body, valid = gzip.compress(plain[:cut]) + gzip.compress(plain[cut:]), True
    else:  # deflate has no members: a second stream is junk after the first
        body += zlib.compress(b"x")
    return FuzzRequest(f"encoded-{encoding}-{defect}", draw(paths), body,
                       {**JSON_HEADERS, "content-encoding": encoding}, valid=valid,
                       rows=rows if valid else None)


EXTREMES: dict[str, list[int | float]] = {
    "UINT8": [0, 255], "UINT16": [0, 256, 65535], "UINT32": [2**32 - 1],
    "UINT64": [2**63, 2**64 - 1], "INT8": [-128, 127], "INT16": [-32768, 32767],
    "INT32": [-(2**31), 2**31 - 1], "INT64": [-(2**63), 2**63 - 1], "FP16": [65504.0, -65504.0],
    "FP32": [3.4e38, -3.4e38, 1e-45], "FP64": [1.7e308, -1.7e308, 5e-324],
}
NUMPY_TYPES = {"UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1",
               "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4",
               "FP64": "<f8"}


@st.composite
def extreme_datatype(draw: st.DrawFn, paths: st.SearchStrategy[str]) -> FuzzRequest:
    """One row whose pixel 0 is a datatype's extreme (or JSON true/false), sent as JSON data or
    as binary bytes of that datatype: valid only when every value is a pixel 0..255."""
    datatype = draw(st.sampled_from(sorted(EXTREMES)))
    rows = _rows(draw(st.integers(0, 2**32 - 1)), 1, None)
    value: object = draw(st.sampled_from(EXTREMES[datatype]) | st.sampled_from([True, False]))
    binary = draw(st.booleans()) and not isinstance(value, bool)
    in_range = not isinstance(value, bool) and 0 <= float(value) <= 255  # type: ignore[arg-type]
    if in_range:
        rows[0, 0] = float(value)  # type: ignore[arg-type]
    if binary:
        array = rows.astype(NUMPY_TYPES[datatype])
        raw = array.tobytes()
        if not in_range:  # write the extreme itself, in that datatype's bytes
            raw = np.array([value], dtype=NUMPY_TYPES[datatype]).tobytes() + raw[array.itemsize:]
        header = json.dumps({"inputs": [{"name": "input", "shape": [1, FEATURES],
                                         "datatype": datatype,
                                         "parameters": {"binary_data_size": len(raw)}}]}).encode()
        body = header + raw
        headers: dict[str, str | bytes] = {"content-type": "application/octet-stream",
                                           BINARY_HEADER: str(len(header))}
    else:
        data: list[object] = list(rows.ravel().tolist() if datatype.startswith("FP")
                                  else rows.astype(np.int64).ravel().tolist())
        data[0] = value if not in_range else data[0]
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, FEATURES],
                                       "datatype": datatype, "data": data}]}).encode()
        headers = {**JSON_HEADERS}
    valid: bool | None = False if not in_range else None  # in range: converting is allowed
    if in_range and datatype == "FP32":
        valid = True
    return FuzzRequest(f"datatype-{datatype}-{'binary' if binary else 'json'}", draw(paths),
                       body, headers, valid=valid, rows=rows if valid else None)


def fuzz_requests(name: str, version: str) -> st.SearchStrategy[FuzzRequest]:
    """Everything above, aimed at the served model (latest and pinned version) and unknown ones."""
    good = st.sampled_from([f"/v2/models/{name}/infer",
                            f"/v2/models/{name}/versions/{version}/infer"])
    any_path = good | st.sampled_from(["/v2/models/no-such-model/infer",
                                       f"/v2/models/{name}/versions/999/infer"]) | odd_versions.map(
        lambda v: f"/v2/models/{name}/versions/{quote(v, safe='%')}/infer")
    return st.one_of(
        garbage_json(any_path), random_tensor(any_path), shaped_tensor(good),
        binary_tensor(good), v1_instances(name), raw_garbage(any_path),
        extreme_shape(any_path), extreme_header(good), encoded_body(good),
        extreme_datatype(good),
    )
