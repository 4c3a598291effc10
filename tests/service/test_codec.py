"""codec on its own: V2 JSON and binary tensors, V1 instances, both answers; exact messages."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from service.codec import (
    BINARY_TYPE,
    HEADER_LENGTH,
    JSON_TYPE,
    decode_inference_request,
    decode_instances,
    encode_inference_response,
    encode_predictions,
    parse_header_length,
    parse_json,
    split_binary,
)
from service.errors import InvalidInput


def v2(*inputs: dict[str, object], **extra: object) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def tensor(name: str = "input", shape: list[int] | None = None, datatype: str = "FP32",
           **fields: object) -> dict[str, object]:
    return {"name": name, "shape": shape or [2, 3], "datatype": datatype, **fields}


def test_json_data_flat_or_nested_keeps_its_datatype() -> None:
    flat = tensor(data=[0, 1, 2, 3, 4, 5])
    nested = tensor("other", datatype="UINT8", data=[[0, 1, 2], [3, 4, 5]])
    request, tensors = decode_inference_request(v2(flat, nested, id="r1"), b"")
    assert request.id == "r1"
    assert tensors["input"].shape == (2, 3) and tensors["input"].dtype.kind in "iu"
    assert tensors["other"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_binary_tensors_are_views_of_the_body() -> None:
    first = np.arange(6, dtype=np.float32)
    second = np.arange(4, dtype=np.uint8)
    header = v2(tensor(parameters={"binary_data_size": first.nbytes}),
                tensor("b", [4], "UINT8", parameters={"binary_data_size": second.nbytes}))
    body = header + first.tobytes() + second.tobytes()
    json_part, binary = split_binary(body, str(len(header)))
    assert json_part == header
    _, tensors = decode_inference_request(json_part, binary)
    assert tensors["input"].dtype == np.float32 and tensors["input"].ravel().tolist() == \
        first.tolist()
    assert tensors["b"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(("body", "binary", "message"), [
    (v2(tensor(data=[1] * 6), tensor(data=[1] * 6)), b"",
     "input 'input' appears twice; send each input once"),
    (v2(tensor(datatype="BOOL", data=[1] * 6)), b"",
     "input 'input': datatype 'BOOL' is not supported; send FP32 (UINT8..64, INT8..64, FP16 "
     "and FP64 are also accepted and converted to float32)"),
    (v2(tensor(shape=[-1, 3], data=[1] * 3)), b"",
     "input 'input': shape [-1, 3] has a negative size"),
    (v2(tensor()), b"", "input 'input' has no data; send 'data' or parameters.binary_data_size "
                        "with binary data"),
    (v2(tensor(data=[1] * 5)), b"", "input 'input': shape [2, 3] needs 6 values but data has 5"),
    (v2(tensor(datatype="INT32", data=[0.5] * 6)), b"",
     "input 'input': datatype INT32 needs whole numbers but data holds fractions"),
    (v2(tensor(data=["a"] * 6)), b"",
     "input 'input': data must hold only numbers, got JSON strings"),
    (v2(tensor(data=[[1, 2], [3]])), b"",
     "input 'input': data must be a flat or evenly nested list of numbers"),
    (v2(tensor(parameters={"binary_data_size": -1})), b"",
     "input 'input': binary_data_size is -1; expected a byte count >= 0"),
    (v2(tensor(parameters={"binary_data_size": 24})), b"\0" * 8,
     "input 'input': binary_data_size is 24 but only 8 bytes of binary data follow the header"),
    (v2(tensor(parameters={"binary_data_size": 8})), b"\0" * 8,
     "input 'input': binary_data_size is 8 bytes but shape [2, 3] of FP32 needs 24"),
    (v2(tensor(data=[1] * 6)), b"\0" * 4,
     "the body carries 4 bytes of binary data but the inputs' binary_data_size add up to 0"),
    (v2(tensor(data=[1] * 6, parameters={"shared_memory_region": "r"})), b"",
     "input 'input': shared memory is not supported; send data inline or as binary_data_size"),
    (b"", b"", "request body is empty; expected a JSON object"),
])
def test_bad_v2_requests(body: bytes, binary: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        decode_inference_request(body, binary)
    assert str(error.value) == message


def test_bad_binary_header_lengths() -> None:
    assert parse_header_length(" 12 ") == 12
    assert parse_header_length("1e3") is None and parse_header_length(None) is None
    with pytest.raises(InvalidInput, match=r"^Inference-Header-Content-Length is 'x'; expected"):
        split_binary(b"{}", "x")
    with pytest.raises(InvalidInput, match="is 9 but the body has only 2 bytes"):
        split_binary(b"{}", "9")
    assert split_binary(b"{}", None) == (b"{}", b"")


def test_invalid_json_says_where() -> None:
    with pytest.raises(InvalidInput, match=r"^request body is not valid JSON: unexpected "):
        parse_json(b'{"inputs": [}')


def test_v2_answer_json_or_binary() -> None:
    probabilities = np.array([[0.25, 0.75]], dtype=np.float32)
    label = np.array([1], dtype=np.int64)
    body, headers = encode_inference_response(
        "m", 3, "r1", [("probabilities", probabilities, False), ("label", label, False)])
    assert headers == {"content-type": JSON_TYPE}
    assert orjson.loads(body) == {
        "model_name": "m", "model_version": "3", "id": "r1", "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]},
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]}]}
    body, headers = encode_inference_response("m", 3, None, [("label", label, True)])
    size = int(headers[HEADER_LENGTH])
    assert headers["content-type"] == BINARY_TYPE
    assert orjson.loads(body[:size])["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert "id" not in orjson.loads(body[:size])
    assert np.frombuffer(body[size:], np.int64).tolist() == [1]


@pytest.mark.parametrize(("body", "message"), [
    (b"[]", "request body must be a JSON object with 'instances': [[784 pixel values], ...]"),
    (b'{"rows": []}', "request body must be a JSON object with 'instances': "
                      "[[784 pixel values], ...]"),
    (b'{"instances": 3}', "instances must be a list of rows, got int"),
    (b'{"instances": [[1, 2], [3]]}', "instances must be rows of equal length (784 numbers each)"),
    (b'{"instances": [[true, false]]}', "instances must hold only numbers, got JSON true/false"),
])
def test_bad_v1_instances(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        decode_instances(body)
    assert str(error.value) == message


def test_v1_instances_and_answer() -> None:
    instances, pixel_range = decode_instances(b'{"instances": [[0, 255.0]]}')
    assert instances.tolist() == [[0, 255]] and pixel_range is None
    assert decode_instances(b'{"instances": [[0.5]], "pixel_range": "0..1"}')[1] == "0..1"
    outputs = {"label": np.array([1, 0]),
               "probabilities": np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)}
    assert orjson.loads(encode_predictions(("zero", "one"), outputs)) == {"predictions": [
        {"label": 1, "class_name": "one", "probabilities": [0.25, 0.75]},
        {"label": 0, "class_name": "zero", "probabilities": [1.0, 0.0]}]}
