"""JSON tensors through simdjson give exactly what the orjson path gives: same request,
same arrays (values and dtype), or the same error message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from service import bounds, codec
from service.errors import InvalidInput, describe_validation_errors
from service.jsontensors import FIND_BRACKETS, MIN_BYTES, _count_brackets, loads_with_arrays
from service.protocol import InferenceRequest

ROWS = 64  # 64 x 784 numbers: well above MIN_BYTES, so the fast path is tried
PIXELS = np.random.default_rng(0).integers(0, 256, (ROWS, 784))


def v2(data: Any, shape: list[int] | None = None, datatype: str = "FP32",
       **extra: Any) -> bytes:
    body = {"inputs": [{"name": "input", "shape": shape or [ROWS, 784], "datatype": datatype,
                        "data": data}], **extra}
    return orjson.dumps(body)


def exact(body: bytes) -> tuple[InferenceRequest, dict[str, np.ndarray]]:
    """The orjson path alone, as every request was decoded before the fast path."""
    payload = codec.parse_json(body)
    bounds.check_request(payload)
    try:
        request = InferenceRequest.model_validate(payload)
    except ValidationError as error:
        raise InvalidInput(describe_validation_errors(error.errors())) from None
    return request, codec._tensors(request, b"", b"true" in body or b"false" in body)


def outcome(decode: Any, body: bytes) -> Any:
    try:
        request, tensors = decode(body)
    except InvalidInput as error:
        return ("error", str(error))
    dumped = request.model_dump(exclude={"inputs": {0: {"data"}}})
    return ("ok", dumped, {k: (v.dtype.str, v.shape, v.tolist()) for k, v in tensors.items()})


ragged = [row.tolist() for row in PIXELS]
ragged[1] = ragged[1] + [5]
ragged[2] = ragged[2][:-1]  # same total count as an even tensor
singleton = [row.tolist() for row in PIXELS]
singleton[3][7] = [singleton[3][7]]  # a number wrapped in a list: same count, not even
flat_wrapped: list[Any] = PIXELS.ravel().tolist()
flat_wrapped[10] = [flat_wrapped[10]]
mixed = PIXELS.tolist()
mixed[5][5] = 2.5

FAST = {  # accepted by the fast path: same arrays as the exact path
    "nested ints": v2(PIXELS.tolist()),
    "flat ints": v2(PIXELS.ravel().tolist()),
    "nested floats": v2((PIXELS / 3).tolist()),
    "ints with one fraction": v2(mixed),
    "exponent": v2([*PIXELS.ravel().tolist()[:-1], 1e2]),
    "out of range int stays int": v2([*PIXELS.ravel().tolist()[:-1], 300]),
    "negative zero": v2([*PIXELS.ravel().tolist()[:-1], -0.0]),
    "UINT8": v2(PIXELS.tolist(), datatype="UINT8"),
    "strings elsewhere with [ and e": v2(PIXELS.tolist(), id="[req] e.E",
                                         parameters={"note": "[[x]]", "flag": True, "n": 3}),
    "requested outputs": v2(PIXELS.tolist(), outputs=[{"name": "label"}]),
    "float parameter": v2(PIXELS.tolist(), parameters={"timeout": 1.5}),
    "floats elsewhere, ints in the tensor": v2(PIXELS.tolist(), parameters={"scale": 2.5e-3}),
    "int64 extremes": v2([*PIXELS.ravel().tolist()[:-2], -(2**63), 2**63 - 1]),
    "a fraction, then an integer beyond int64": v2([0.5, *PIXELS.ravel().tolist()[1:-1],
                                                    2**64 - 1]),
    "a fraction first, then integers": v2([[0.5, *PIXELS[0].tolist()[1:]],
                                           *PIXELS[1:].tolist()]),
    "integers first, a fraction last": v2([*PIXELS.ravel().tolist()[:-1], 0.25]),
}
EXACT = {  # left to the exact path (fallback), which answers as it always did
    "null": v2([*PIXELS.ravel().tolist()[:-1], None]),
    "string 7": v2([*PIXELS.ravel().tolist()[:-1], "7"]),
    "true": v2([*PIXELS.ravel().tolist()[:-1], True]),
    "ragged rows, same count": v2(ragged),
    "number wrapped in a list": v2(singleton),
    "flat with a wrapped number": v2(flat_wrapped),
    "3-D": v2(PIXELS.reshape(ROWS, 28, 28).tolist(), shape=[ROWS, 28, 28]),
    "fractions for INT32": v2(mixed, datatype="INT32"),
    "count mismatch": v2(PIXELS.tolist(), shape=[ROWS, 783]),
    "too big for int64": v2([*PIXELS.ravel().tolist()[:-1], 2**64 - 1]),
    "too big for int64, then a fraction": v2([2**64 - 1, *PIXELS.ravel().tolist()[1:-1], 0.5]),
    "beyond uint64": v2([*PIXELS.ravel().tolist()[:-1], 1234567]).replace(
        b"1234567]", str(2**64).encode() + b"]"),
    "no data": orjson.dumps({"inputs": [{"name": "input", "shape": [1, 784],
                                         "datatype": "FP32", "pad": "x" * MIN_BYTES}]}),
    "two inputs": orjson.dumps({"inputs": [
        {"name": "input", "shape": [ROWS, 784], "datatype": "FP32", "data": PIXELS.tolist()},
        {"name": "input", "shape": [ROWS, 784], "datatype": "FP32", "data": PIXELS.tolist()}]}),
    "not an object": orjson.dumps([PIXELS.tolist()]),
    "missing name": orjson.dumps({"inputs": [{"shape": [ROWS, 784], "datatype": "FP32",
                                              "data": PIXELS.tolist()}]}),
    "bad JSON": v2(PIXELS.tolist())[:-2],
    "empty data": v2([], pad="x" * MIN_BYTES),
    "payload nested 300 deep": v2(PIXELS.tolist(), parameters={"x": "deep"}).replace(
        b'"deep"', b"[" * 300 + b"]" * 300),
}


@pytest.mark.parametrize("name", sorted(FAST))
def test_fast_path_gives_the_exact_paths_arrays(name: str) -> None:
    body = FAST[name]
    assert len(body) >= MIN_BYTES
    assert loads_with_arrays(body, "data") is not None, "the fast path was not taken"
    result = outcome(codec.decode_inference_request_json, body)
    assert result[0] == "ok"
    assert result == outcome(exact, body)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_unusual_bodies_answer_as_before(name: str) -> None:
    body = EXACT[name]
    assert outcome(codec.decode_inference_request_json, body) == outcome(exact, body)


def test_duplicate_and_escaped_bodies_are_left_to_the_exact_path() -> None:
    duplicate = v2(PIXELS.tolist()).replace(b'"datatype":"FP32"',
                                            b'"datatype":"FP32","datatype":"INT8"')
    escaped = v2(PIXELS.tolist(), id="say \"hi\" \u00e9")
    assert loads_with_arrays(duplicate, "data") is None
    assert loads_with_arrays(v2(PIXELS.tolist(), id="a\\b"), "data") is None
    assert outcome(codec.decode_inference_request_json, duplicate) == outcome(exact, duplicate)
    assert outcome(codec.decode_inference_request_json, escaped) == outcome(exact, escaped)


SAMPLES = Path(__file__).resolve().parents[2] / "samples"
ONE_ROW = PIXELS[:1]
ONE_ROW_BODIES = {  # one row, as clients send it: the requests most users make
    "sample digit (README's curl)": (SAMPLES / "digit-7.v2.json").read_bytes(),
    "ints": v2(ONE_ROW.tolist(), [1, 784]),
    "float32 tolist": v2(ONE_ROW.astype(np.float32).tolist(), [1, 784]),
    "0..1 fractions": v2((ONE_ROW / 255).tolist(), [1, 784], parameters={"pixel_range": "0..1"}),
    "UINT8 flat": v2(ONE_ROW.ravel().tolist(), [1, 784], "UINT8"),
    "[ in strings": v2(ONE_ROW.tolist(), [1, 784], id="[1]", parameters={"note": "[[x"}),
    "a fraction first": v2([0.5, *ONE_ROW.ravel().tolist()[1:]], [1, 784]),
}


@pytest.mark.parametrize("name", sorted(ONE_ROW_BODIES))
def test_one_row_bodies_take_the_fast_path_with_the_exact_arrays(name: str) -> None:
    body = ONE_ROW_BODIES[name]
    assert loads_with_arrays(body, "data") is not None, "the fast path was not taken"
    result = outcome(codec.decode_inference_request_json, body)
    assert result[0] == "ok"
    assert result == outcome(exact, body)


def test_one_row_bodies_with_unusual_values_answer_as_before() -> None:
    for value in (None, "7", True, [5]):
        for first in (0, 0.5):  # the array typed from an integer or from a fraction
            body = v2([first, *ONE_ROW.ravel().tolist()[1:-1], value], [1, 784])
            assert outcome(codec.decode_inference_request_json, body) == outcome(exact, body)


@pytest.mark.parametrize("instances", [PIXELS.tolist(), (PIXELS / 7).tolist(), ragged,
                                       singleton, [*PIXELS.tolist()[:-1], ["7"] * 784],
                                       ONE_ROW.tolist(), (ONE_ROW / 255).tolist()])
def test_v1_instances_match_the_exact_path(instances: list[Any]) -> None:
    body = orjson.dumps({"instances": instances})

    def v1_exact(raw: bytes) -> Any:
        try:
            array = np.asarray(orjson.loads(raw)["instances"])
            if array.dtype.kind not in "iuf":
                raise ValueError
        except ValueError:
            return "refused"
        return (array.dtype.str, array.tolist())

    def v1(raw: bytes) -> Any:
        try:
            array, _ = codec.decode_instances(raw)
        except InvalidInput:
            return "refused"
        return (array.dtype.str, array.tolist())

    assert v1(body) == v1_exact(body)


def test_results_stay_valid_after_the_reused_parser_parses_again() -> None:
    """One parser per thread is reused; nothing it returned may change when it parses the next
    body (the payload is plain Python, the numbers a copy)."""
    first_rows = np.arange(40 * 784).reshape(40, 784) % 256
    first = loads_with_arrays(v2(first_rows.tolist(), [40, 784]), "data")
    assert first is not None
    payload, array = first
    kept_payload, kept_array = orjson.loads(orjson.dumps(payload)), array.copy()
    for seed in range(3):  # bigger and smaller bodies after it, ints and floats
        rows = np.random.default_rng(seed).uniform(0, 255, (20 + 30 * seed, 784)).round(2)
        assert loads_with_arrays(v2(rows.tolist(), list(rows.shape), name=f"x{seed}"),
                                 "data") is not None
    assert payload == kept_payload and np.array_equal(array, kept_array)


@given(st.lists(st.sampled_from([b"[", b"]", b"1,", b"x" * 50]), max_size=200).map(b"".join))
def test_brackets_are_counted_exactly_however_many_there_are(raw: bytes) -> None:
    """Found one by one up to FIND_BRACKETS, the rest counted by numpy: the sum is exact."""
    assert _count_brackets(raw) == raw.count(b"[")


@pytest.mark.parametrize("brackets", [0, 1, FIND_BRACKETS - 1, FIND_BRACKETS, FIND_BRACKETS + 1])
def test_bracket_count_at_the_switch_to_numpy(brackets: int) -> None:
    raw = b"x" + b"x".join([b"["] * brackets) + b"x"  # exactly `brackets` of them
    assert _count_brackets(raw) == raw.count(b"[")
