"""Every kind of bad input gets a 4xx with one {"error": ...} naming field, value and rule."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from httpx import Client

from service.http.app import create_app
from tests.service.conftest import MODEL, settings_for
from tests.service.servers import serve_in_thread

INFER = f"/v2/models/{MODEL}/infer"
ROW = [0] * 784


def v2(
    shape: list[int], data: Any, datatype: str = "FP32", name: str = "input", **extra: Any
) -> bytes:
    return json.dumps(
        {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}], **extra}
    ).encode()


def binary(
    values: np.ndarray,
    header_length: int | None = None,
    size: int | None = None,
    shape: list[int] | None = None,
) -> tuple[bytes, dict[str, str]]:
    blob = values.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": shape or list(values.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size or len(blob)},
                }
            ]
        }
    )
    length = len(header) if header_length is None else header_length
    return header.encode() + blob, {"Inference-Header-Content-Length": str(length)}


def with_value(value: float) -> np.ndarray:
    row = np.zeros((1, 784), np.float32)
    row[0, 3] = value
    return row


NOT_FIT = "does not fit the model; expected [N, 784] (N rows of 784 raw pixel values)"
DATATYPE = (
    "is not supported; send FP32 (UINT8..64, INT8..64, FP16 and FP64 are also accepted "
    "and converted to float32)"
)

JSON_CASES = [
    ("wrong length", v2([1, 783], [0] * 783), 400, f"input 'input': shape [1, 783] {NOT_FIT}"),
    # [N, 28, 28] images are accepted (tests/e2e/test_inputs.py); other 3-d shapes are not
    ("3-d shape", v2([2, 14, 28], [0] * 784), 400, f"input 'input': shape [2, 14, 28] {NOT_FIT}"),
    (
        "count disagrees",
        v2([2, 784], ROW),
        400,
        "input 'input': shape [2, 784] needs 1568 values but data has 784",
    ),
    ("negative dim", v2([-1, 784], ROW), 400, "input 'input': shape [-1, 784] has a negative size"),
    (
        "over 255",
        v2([1, 784], [300, *ROW[1:]]),
        400,
        "input 'input': value 300 at row 0, column 0 is outside 0..255; expected raw pixel values "
        "in 0..255",
    ),
    (
        "negative",
        v2([1, 784], [*ROW[:5], -1.5, *ROW[6:]]),
        400,
        "input 'input': value -1.5 at row 0, column 5 is outside 0..255; expected raw pixel values "
        "in 0..255",
    ),
    (
        "huge fp64",
        v2([1, 784], [1e300, *ROW[1:]], "FP64"),
        400,
        "input 'input': value 1e+300 at row 0, column 0 is outside 0..255; expected raw pixel "
        "values in 0..255",
    ),
    (
        "null after floats",  # the float fast path must not read null as NaN
        v2([1, 784], [0.5] * 783 + [None]),
        400,
        "input 'input': data must hold only numbers, got JSON mixed or out-of-range values",
    ),
    (
        "string after floats",
        v2([1, 784], [0.5] * 783 + ["7"]),
        400,
        "input 'input': data must hold only numbers, got JSON strings",
    ),
    ("BYTES of numbers", v2([1, 784], ROW, "BYTES"), 400,
     "input 'input' element 0: expected a base64 string of PNG or JPEG bytes, got int"),
    ("BOOL", v2([1, 784], ROW, "BOOL"), 400, f"input 'input': datatype 'BOOL' {DATATYPE}"),
    (
        "unknown datatype",
        v2([1, 784], ROW, "FLOAT"),
        400,
        f"input 'input': datatype 'FLOAT' {DATATYPE}",
    ),
    (
        "fractions for INT32",
        v2([1, 784], [0.5, *ROW[1:]], "INT32"),
        400,
        "input 'input': datatype INT32 needs whole numbers but data holds fractions",
    ),
    (
        "strings",
        v2([1, 784], ["0"] * 784),
        400,
        "input 'input': data must hold only numbers, got JSON strings",
    ),
    (
        "booleans",
        v2([1, 784], [True] * 784),
        400,
        "input 'input': data must hold only numbers, got JSON true/false",
    ),
    (
        "ragged",
        v2([2, 784], [ROW, ROW[:-1]]),
        400,
        "input 'input': data must be a flat or evenly nested list of numbers",
    ),
    (
        "no data",
        json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32"}]}).encode(),
        400,
        "input 'input' has no data; send 'data' or parameters.binary_data_size with binary data",
    ),
    (
        "empty batch",
        v2([0, 784], []),
        400,
        "input 'input': the batch is empty (shape [0, 784]); send at least one row",
    ),
    (
        "too many rows",
        v2([65, 784], [ROW] * 65),
        400,
        "input 'input': 65 rows in one request, over the limit of 64 (MLP_MAX_ROWS_PER_REQUEST); "
        "split the batch",
    ),
    (
        "unknown input",
        v2([1, 784], ROW, name="pixels"),
        400,
        "unknown input 'pixels'; model 'mnist-mlp' has inputs ['input']",
    ),
    (
        "unknown output",
        v2([1, 784], ROW, outputs=[{"name": "logits"}]),
        400,
        "unknown output 'logits'; model 'mnist-mlp' has outputs ['probabilities', 'label']",
    ),
    (
        "classification",
        v2([1, 784], ROW, outputs=[{"name": "label", "parameters": {"classification": 3}}]),
        400,
        "output 'label': only the binary_data parameter is supported (no classification or shared "
        "memory)",
    ),
    (
        "duplicate input",
        json.dumps(
            {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": ROW}] * 2}
        ).encode(),
        400,
        "input 'input' appears twice; send each input once",
    ),
    ("no inputs key", b'{"id": "x"}', 400, "inputs: Field required (received {'id': 'x'})"),
    (
        "empty inputs",
        b'{"inputs": []}',
        400,
        "inputs: List should have at least 1 item after validation, not 0 (received [])",
    ),
    (
        "shape not a list",
        b'{"inputs": [{"name": "input", "shape": "1x784", "datatype": "FP32", "data": [1]}]}',
        400,
        "inputs.0.shape: Input should be a valid list (received '1x784')",
    ),
    (
        "malformed JSON",
        b'{"inputs": [',
        400,
        "request body is not valid JSON: unexpected end of data: line 1 column 13 (char 12)",
    ),
    (
        "NaN literal",
        b'{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP32", "data": [NaN]}]}',
        400,
        "request body is not valid JSON: unexpected character, expected a JSON value: line 1 "
        "column 77 (char 76)",
    ),
    ("empty body", b"", 400, "request body is empty; expected a JSON object"),
    (
        "not an object",
        b"[1, 2]",
        400,
        "body: Input should be a valid dictionary or instance of InferenceRequest "
        "(received [1, 2])",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "message"), [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES]
)
def test_bad_json_request(shared_client: Client, body: bytes, status: int, message: str) -> None:
    response = shared_client.post(INFER, content=body)
    assert (response.status_code, response.json()) == (status, {"error": message})


BINARY_CASES = [
    (
        "NaN",
        binary(with_value(np.nan)),
        "input 'input': value nan at row 0, column 3 is not a "
        "finite number; expected raw pixel values in 0..255",
    ),
    (
        "infinity",
        binary(with_value(np.inf)),
        "input 'input': value inf at row 0, column 3 is "
        "not a finite number; expected raw pixel values in 0..255",
    ),
    (
        "header longer than body",
        binary(with_value(0), header_length=5000),
        "Inference-Header-Content-Length is 5000 but the body has only 3248 bytes",
    ),
    (
        "header length not a number",
        (b"{}", {"Inference-Header-Content-Length": "ten"}),
        "Inference-Header-Content-Length is 'ten'; expected the byte length of the JSON header",
    ),
    (
        "size past the end",
        binary(with_value(0), size=4000),
        "input 'input': binary_data_size is 4000 but only 3136 bytes of binary data follow the "
        "header",
    ),
    (
        "extra binary bytes",
        binary(with_value(0), size=3132, shape=[1, 783]),
        "the body carries 3136 bytes of binary data but the inputs' binary_data_size add up to "
        "3132",
    ),
    (
        "shape needs more bytes",
        binary(np.zeros((1, 783)), shape=[1, 784]),
        "input 'input': binary_data_size is 3132 bytes but shape [1, 784] of FP32 needs 3136",
    ),
]


@pytest.mark.parametrize(
    ("request_parts", "message"), [c[1:] for c in BINARY_CASES], ids=[c[0] for c in BINARY_CASES]
)
def test_bad_binary_request(
    shared_client: Client, request_parts: tuple[bytes, dict[str, str]], message: str
) -> None:
    body, headers = request_parts
    response = shared_client.post(INFER, content=body, headers=headers)
    assert (response.status_code, response.json()) == (400, {"error": message})


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        (
            "POST",
            "/v2/models/nope/infer",
            404,
            "model 'nope' is not loaded; loaded models: mnist-mlp",
        ),
        (
            "POST",
            f"/v2/models/{MODEL}/versions/1/infer",
            404,
            "model 'mnist-mlp' version 1 is not loaded; version 2 is served",
        ),
        (
            "GET",
            f"/v2/models/{MODEL}/versions/abc",
            400,
            "model version 'abc' is invalid: expected a positive integer",
        ),
        ("GET", "/v2/models/nope", 404, "model 'nope' is not loaded; loaded models: mnist-mlp"),
        (
            "GET",
            "/v2/models/nope/ready",
            404,
            "model 'nope' is not loaded; loaded models: mnist-mlp",
        ),
        ("GET", "/v1/models/nope", 404, "model 'nope' is not loaded; loaded models: mnist-mlp"),
        ("GET", "/v3/anything", 404, "no route GET /v3/anything; see /docs"),
        ("DELETE", INFER, 405, f"method DELETE is not allowed on {INFER}"),
        ("GET", INFER, 405, f"method GET is not allowed on {INFER}"),
    ],
)
def test_unknown_things(
    shared_client: Client, method: str, path: str, status: int, message: str
) -> None:
    response = shared_client.request(method, path, content=v2([1, 784], ROW))
    assert (response.status_code, response.json()) == (status, {"error": message})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"[[0]]",
            "request body must be a JSON object with 'instances': [[784 pixel values], ...]",
        ),
        (b'{"instances": 5}', "instances must be a list of rows, got int"),
        (
            json.dumps({"instances": [ROW, ROW[:-1]]}).encode(),
            "instances must be rows of equal length (784 numbers each)",
        ),
        (json.dumps({"instances": [ROW[:-1]]}).encode(), f"instances: shape [1, 783] {NOT_FIT}"),
        (
            json.dumps({"instances": []}).encode(),
            "instances: shape [0] does not fit the model; expected [N, 784] "
            "(N rows of 784 raw pixel values)",
        ),
        (
            json.dumps({"instances": [["a"] * 784]}).encode(),
            "instances must hold only numbers, got JSON strings",
        ),
        (
            json.dumps({"instances": [[256] * 784]}).encode(),
            "instances: value 256 at row 0, column 0 is outside 0..255; "
            "expected raw pixel values in 0..255",
        ),
    ],
)
def test_bad_v1_request(shared_client: Client, body: bytes, message: str) -> None:
    response = shared_client.post(f"/v1/models/{MODEL}:predict", content=body)
    assert (response.status_code, response.json()) == (400, {"error": message})


def test_body_over_limit_by_content_length(shared_client: Client) -> None:
    response = shared_client.post(INFER, content=b" " * 2_000_001)
    assert response.status_code == 413
    assert response.json() == {
        "error": "request body is 2000001 bytes, over the limit of "
        "2000000 bytes (MLP_MAX_BODY_BYTES); send fewer rows per request "
        "or use the binary tensor format"
    }


def test_compressed_body_over_limit_after_decompression(shared_client: Client) -> None:
    bomb = gzip.compress(b" " * 3_000_000)
    assert len(bomb) < 10_000
    response = shared_client.post(INFER, content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.json() == {
        "error": "request body is more than 2000000 bytes after gzip "
        "decompression, over the limit of 2000000 bytes "
        "(MLP_MAX_BODY_BYTES); send fewer rows per request or use the "
        "binary tensor format"
    }


@pytest.mark.parametrize(
    ("encoding", "body", "status", "message"),
    [
        ("br", b"{}", 415, "Content-Encoding 'br' is not supported; use gzip, deflate or none"),
        (
            "gzip",
            b"not gzip",
            400,
            "request body is not valid gzip data (Error -3 while "
            "decompressing data: incorrect header check)",
        ),
        ("gzip", gzip.compress(v2([1, 784], ROW))[:50], 400, "request body is truncated gzip data"),
    ],
)
def test_bad_content_encoding(
    shared_client: Client, encoding: str, body: bytes, status: int, message: str
) -> None:
    response = shared_client.post(INFER, content=body, headers={"Content-Encoding": encoding})
    assert (response.status_code, response.json()) == (status, {"error": message})


def test_queue_full_is_503_with_retry_after(repo: Path) -> None:
    with serve_in_thread(create_app(settings_for(repo, max_queue_rows=1))) as shared_client:
        response = shared_client.post(INFER, content=v2([2, 784], [ROW, ROW]))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "error": "server busy: 0 rows are queued and this request adds 2, "
        "over the limit of 1; retry after 1 s"
    }


def test_deadline_is_504(repo: Path) -> None:
    with serve_in_thread(create_app(settings_for(repo, request_timeout_ms=0.001))) as shared_client:
        response = shared_client.post(INFER, content=v2([1, 784], ROW))
    assert response.status_code == 504
    assert re.fullmatch(  # the 1 us deadline passes while the body is read or queued
        r"request timed out after \d+ ms waiting for the model; retry later or "
        r"send fewer rows|the request body was not complete within the request deadline "
        r"\(received \d+ bytes; MLP_REQUEST_TIMEOUT_MS\)",
        response.json()["error"],
    )


def test_client_timeout_parameter_shortens_the_deadline(shared_client: Client) -> None:
    response = shared_client.post(INFER, content=v2([1, 784], ROW, parameters={"timeout": 1}))
    assert response.status_code == 504
    assert response.json()["error"].startswith("request timed out after ")


def test_validation_and_unexpected_errors_use_the_same_shape(repo: Path) -> None:
    """FastAPI's own validation errors and crashes are rendered as {"error": ...} too."""
    app = create_app(settings_for(repo))

    @app.get("/test/typed")
    async def typed(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/test/crash")
    async def crash() -> None:
        raise RuntimeError("boom with a secret path /etc/x")

    with serve_in_thread(app) as client:
        invalid = client.get("/test/typed", params={"n": "seven"})
        crashed = client.get("/test/crash")
    assert (invalid.status_code, invalid.json()) == (400, {
        "error": "query.n: Input should be a valid integer, unable to parse string as an "
        "integer (received 'seven')"})
    assert (crashed.status_code, crashed.json()) == (
        500, {"error": "internal server error; see the server log"})


@pytest.mark.parametrize(("method", "path", "headers", "message"), [
    ("GET", f"/v2/models/{MODEL}/versions/%C2%B2", {},
     "model version '²' is invalid: expected a positive integer"),
    ("POST", f"/v2/models/{MODEL}/versions/1%C2%B9/infer", {},
     "model version '1¹' is invalid: expected a positive integer"),
    ("POST", INFER, {"Inference-Header-Content-Length": b"\xb2"},
     "Inference-Header-Content-Length is '²'; expected the byte length of the JSON header"),
])
def test_non_ascii_digits_are_not_numbers(shared_client: Client, method: str, path: str,
                                         headers: dict[str, bytes], message: str) -> None:
    """str.isdigit() accepts '²' but int() does not; found by the reliability fuzzer."""
    response = shared_client.request(method, path, content=v2([1, 784], ROW), headers=headers)
    assert (response.status_code, response.json()) == (400, {"error": message})
    assert shared_client.post(INFER, content=v2([1, 784], ROW)).status_code == 200
