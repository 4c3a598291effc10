"""JSON tensors straight into numpy (simdjson), skipping one Python float per number.

Why: a 256-row V2 JSON request carries 200,704 numbers; `orjson.loads` makes a Python float of
each and `np.asarray` walks them again, most of the request's server CPU (bench/README.md).
simdjson parses the body and copies each homogeneous number array into a typed buffer.

The fast path only ever answers requests the exact path (`codec`) would accept, with identical
arrays: whenever anything is unusual -- not an object, duplicate keys, a tensor deeper than 2-D,
ragged rows, a non-number, a number out of int64/float64 range, a schema error -- it returns
None and the caller decodes the body the ordinary way, which produces today's exact error
messages. Integers stay int64 and any fraction or exponent makes the array float64, exactly as
`np.asarray` types a list of Python numbers: simdjson keeps each number's kind (int64, uint64,
or double for any '.', 'e' or 'E'), and an int64 buffer is asked for first.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import orjson
import simdjson

# Below this orjson is as fast. One row of 784 numbers is 1.6-16 kB; decoding it here instead
# of orjson + np.asarray (in-process, best of 7 x 2,000, 2026-12-02): V2, the sample digit
# (1.8 kB of integers) 54 -> 37 µs, 784 whole-number floats 45 -> 29, 784 fractions 61 -> 37;
# V1, the sample digit 26 -> 11 µs. Break-even is ~200 numbers (1-4 kB).
MIN_BYTES = 1024


def loads_with_arrays(raw: bytes, tensor_key: str) -> tuple[Any, np.ndarray] | None:
    """Parse a JSON object holding one tensor of numbers: V2 `inputs[0].data` (`tensor_key`
    "data", exactly one input) or V1 `instances` ("instances").

    Returns (payload, array): the object without that array (as orjson would return it) and the
    numbers as int64/float64 [n] or [rows, columns]. None means: decode this body the ordinary
    way (too small to gain, or anything unusual; see the module doc).
    """
    if len(raw) < MIN_BYTES or b"\\" in raw:
        return None  # small, or string escapes (parsers differ on lone surrogates)
    parser = _parser()
    try:
        split = _split(parser.parse(raw), tensor_key)
        if split is None:
            return None
        payload, tensor = split
        # Outside strings every '[' opens an array: those the payload (and the tensor's key)
        # does not account for are the tensor's.
        tensor_brackets = _count_brackets(raw) - _brackets(payload) - tensor_key.count("[")
        array = _numbers(tensor, tensor_brackets)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError):
        return None  # invalid JSON, a non-number, a number out of range: the exact path says it
    return None if array is None else (payload, array)


_PARSERS = threading.local()


def _parser() -> simdjson.Parser:
    """This thread's parser (a parser may not be shared across threads). Reused: a new one per
    call allocated its document tape afresh for every body, and at 256 rows (1 MB of JSON) the
    page faults on that memory cost as much as the parse (py-spy --native on a worker). Server
    CPU per 256-row JSON request, one worker, wrk at one client: 10.5-11.1 ms -> 6.3-6.7 ms.
    It keeps the tape of the largest body seen (bounded by MLP_MAX_BODY_BYTES). Nothing parsed
    outlives a call: the payload is copied to plain Python and the numbers to numpy."""
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = simdjson.Parser()
    return parser


def _split(doc: Any, tensor_key: str) -> tuple[Any, Any] | None:
    """(the object without the tensor, as plain Python; the tensor's simdjson Array).

    Each object's keys are read once (`_keys`) and each value looked up once: walking the
    keys again and looking the tensor up twice took it from 28,000 to 33,000 instructions
    (callgrind, bench/serve_load.py's one-row body)."""
    keys = _keys(doc)
    if keys is None:
        return None
    if tensor_key == "instances":
        if "instances" not in keys:
            return None
        return {k: _plain(doc[k]) for k in keys if k != "instances"}, doc["instances"]
    if "inputs" not in keys:
        return None
    inputs = doc["inputs"]
    if not isinstance(inputs, simdjson.Array) or len(inputs) != 1:
        return None
    item: Any = inputs[0]
    fields = _keys(item)
    if fields is None or tensor_key not in fields:
        return None
    payload = {k: _plain(doc[k]) for k in keys if k != "inputs"}
    plain_item = {}
    for k in fields:
        if k == tensor_key:
            tensor = item[k]
        else:
            plain_item[k] = _plain(item[k])
    payload["inputs"] = [plain_item]
    return payload, tensor


def _keys(obj: Any) -> list[str] | None:
    """An object's keys, or None when it is not an object or has a key twice (duplicate keys
    resolve differently across parsers; leave them to the exact path)."""
    if not isinstance(obj, simdjson.Object):
        return None
    keys = list(obj.keys())
    return keys if len(keys) == len(set(keys)) else None


def _plain(value: Any) -> Any:
    """A simdjson proxy as plain Python (dicts, lists), as orjson would have returned it."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


# '[' found one at a time (memchr) up to this many, the rest counted by numpy.
FIND_BRACKETS = 32


def _count_brackets(raw: bytes) -> int:
    """How many '[' the body holds, strings included.

    Flat tensors have a handful, nested ones one per row. Finding each with bytes.find skips
    the numbers at memchr speed; past FIND_BRACKETS numpy compares every byte instead, so a
    body of brackets costs no more than numpy. Best of 5, in-process: one row (3.4 kB) 0.9 µs
    against 2.4 for bytes.count and 3.6 for numpy alone; 256 flat rows (866 kB) 11 against
    604 and 86 µs; 256 nested rows 85 µs, as numpy alone.
    """
    count, at = 0, raw.find(b"[")
    while at >= 0:
        count += 1
        if count == FIND_BRACKETS:
            rest = np.frombuffer(raw, np.uint8, offset=at + 1)
            return count + int(np.count_nonzero(rest == ord("[")))
        at = raw.find(b"[", at + 1)
    return count


def _brackets(payload: Any) -> int:
    """How many '[' the payload (plain Python from JSON) has in JSON text, strings included.

    orjson writes every list as one '[' and never escapes '[' in a string, and the body had no
    escapes, so its text has as many as the body's part it came from. Serializing the small
    payload (~0.7 µs) beat walking it in Python (~6.8 µs for a V2 request's payload)."""
    return orjson.dumps(payload).count(b"[")


def _numbers(value: Any, brackets: int) -> np.ndarray | None:
    """A flat or evenly nested 2-D array of numbers as int64 (no fraction or exponent
    anywhere) or float64, as np.asarray types a list of Python numbers; None otherwise.

    simdjson flattens nested arrays without checking that rows are even, so the structure is
    checked here: the tensor's text has exactly one '[' per row plus the outer one (`brackets`),
    every row has the first row's length, and the buffer holds rows x columns numbers.
    """
    if not isinstance(value, simdjson.Array) or len(value) == 0:
        return None
    first = value[0]
    if isinstance(first, simdjson.Array):
        rows, columns = len(value), len(first)
        if columns == 0 or brackets != rows + 1:
            return None
        if any(not isinstance(row, simdjson.Array) or len(row) != columns for row in value):
            return None
        shape: tuple[int, ...] = (rows, columns)
    else:
        if brackets != 1:
            return None
        shape = (len(value),)
    array = _typed(value, first[0] if shape[1:] else first)
    if array is None or array.size != math.prod(shape):  # np.prod: ~5 µs per call
        return None
    return array.reshape(shape)


def _typed(value: Any, first: Any) -> np.ndarray | None:
    """The numbers as int64 when every one is a JSON integer within int64, else float64 when
    each is a number and one has a fraction or exponent; None for a whole number beyond int64
    (np.asarray would not make int64 of it). A non-number raises TypeError. `first` is the
    first number, as simdjson typed it.

    Why ask simdjson: it typed every number while parsing, so this replaces counting '.', 'e'
    and 'E' over the whole body (three passes over 1 MB for a 256-row request, ~0.15 ms).
    When the first number already has a fraction the array is float64 whatever follows, so
    the int64 buffer is not tried: its refusal cost ~12 µs (a one-row request of floats:
    the typing 18.7 -> 4.7 µs).
    """
    if type(first) is float:
        return np.frombuffer(value.as_buffer(of_type="d"), dtype="<f8")
    try:
        return np.frombuffer(value.as_buffer(of_type="i"), dtype="<i8")
    except ValueError:  # NUMBER_OUT_OF_RANGE: an integer in 2^63..2^64-1 before any fraction
        return None
    except TypeError:  # a fraction or exponent (or a non-number: the float buffer raises too)
        return np.frombuffer(value.as_buffer(of_type="d"), dtype="<f8")
