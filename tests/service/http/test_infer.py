"""Inference over V2 (JSON, binary, compressed) and V1, checked against onnxruntime in-process."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import orjson
from httpx import Client

from service.jsontensors import MIN_BYTES
from tests.service.conftest import MODEL, payload, pixels, reference

INFER = f"/v2/models/{MODEL}/infer"


def rows_of(request: dict) -> np.ndarray:
    return np.asarray(request["inputs"][0]["data"], dtype=np.float32).reshape(-1, 784)


def test_nested_json_matches_onnxruntime_and_echoes_id(
    shared_client: Client, shared_repo: Path
) -> None:
    request = payload("infer_nested")
    response = shared_client.post(INFER, content=json.dumps(request))
    assert response.status_code == 200, response.text
    body = response.json()
    expected = reference(shared_repo / MODEL / "2", rows_of(request))
    assert body["model_name"] == MODEL and body["model_version"] == "2" and body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["probabilities"]["datatype"] == "FP32"
    assert outputs["probabilities"]["shape"] == [2, 10]
    np.testing.assert_allclose(
        np.array(outputs["probabilities"]["data"], np.float32).reshape(2, 10),
        expected["probabilities"],
        rtol=1e-6,
    )
    assert outputs["label"] == {
        "name": "label",
        "datatype": "INT64",
        "shape": [2],
        "data": expected["label"].tolist(),
    }
    assert response.headers["content-type"] == "application/json"


def test_flat_data_and_requested_output_only(shared_client: Client, shared_repo: Path) -> None:
    request = payload("infer_flat")
    body = shared_client.post(INFER, content=json.dumps(request)).json()
    expected = reference(shared_repo / MODEL / "2", rows_of(request))
    assert [o["name"] for o in body["outputs"]] == ["label"]
    assert body["outputs"][0]["data"] == expected["label"].tolist()
    assert "id" not in body


def test_integer_datatype_is_converted_to_float32(shared_client: Client, shared_repo: Path) -> None:
    request = payload("infer_uint8")
    body = shared_client.post(INFER, content=json.dumps(request)).json()
    expected = reference(shared_repo / MODEL / "2", rows_of(request))
    assert body["outputs"][1]["data"] == expected["label"].tolist()


def binary_request(
    rows: np.ndarray,
    datatype: str = "FP32",
    outputs: list[dict] | None = None,
    parameters: dict | None = None,
) -> tuple[bytes, dict[str, str]]:
    blob = rows.astype({"FP32": "<f4", "FP64": "<f8", "UINT8": "u1", "FP16": "<f2"}[datatype])
    blob_bytes = blob.tobytes()
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(blob_bytes)},
            }
        ]
    }
    if outputs is not None:
        header["outputs"] = outputs
    if parameters is not None:
        header["parameters"] = parameters
    json_bytes = json.dumps(header).encode()
    return json_bytes + blob_bytes, {
        "Inference-Header-Content-Length": str(len(json_bytes)),
        "Content-Type": "application/octet-stream",
    }


def split_response(content: bytes, header_length: str) -> tuple[dict, dict[str, np.ndarray]]:
    size = int(header_length)
    header = orjson.loads(content[:size])
    arrays, offset = {}, size
    for output in header["outputs"]:
        nbytes = output["parameters"]["binary_data_size"]
        dtype = {"FP32": "<f4", "INT64": "<i8"}[output["datatype"]]
        arrays[output["name"]] = np.frombuffer(content[offset : offset + nbytes], dtype).reshape(
            output["shape"]
        )
        offset += nbytes
    assert offset == len(content)
    return header, arrays


def test_binary_inputs_and_outputs(shared_client: Client, shared_repo: Path) -> None:
    rows = pixels(3)
    body, headers = binary_request(rows, parameters={"binary_data_output": True})
    response = shared_client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header, arrays = split_response(
        response.content, response.headers["inference-header-content-length"]
    )
    expected = reference(shared_repo / MODEL / "2", rows)
    np.testing.assert_allclose(arrays["probabilities"], expected["probabilities"], rtol=1e-6)
    np.testing.assert_array_equal(arrays["label"], expected["label"])
    assert header["model_version"] == "2"


def test_binary_per_output_choice(shared_client: Client, shared_repo: Path) -> None:
    rows = pixels(2, seed=3)
    body, headers = binary_request(
        rows,
        "UINT8",
        outputs=[
            {"name": "probabilities", "parameters": {"binary_data": True}},
            {"name": "label", "parameters": {"binary_data": False}},
        ],
    )
    response = shared_client.post(INFER, content=body, headers=headers)
    size = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.content[:size])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 2 * 10 * 4}
    assert (
        header["outputs"][1]["data"] == reference(shared_repo / MODEL / "2", rows)["label"].tolist()
    )
    assert len(response.content) == size + 80


def test_fp64_and_fp16_binary_inputs(shared_client: Client, shared_repo: Path) -> None:
    rows = pixels(2, seed=5)
    expected = reference(shared_repo / MODEL / "2", rows)["label"].tolist()
    for datatype in ("FP64", "FP16"):
        body, headers = binary_request(rows, datatype)
        response = shared_client.post(INFER, content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][1]["data"] == expected


def test_gzip_and_deflate_bodies_and_gzip_response(
    shared_client: Client, shared_repo: Path
) -> None:
    request = json.dumps(payload("infer_nested")).encode()
    expected = reference(shared_repo / MODEL / "2", rows_of(payload("infer_nested")))[
        "label"
    ].tolist()
    for encoding, packed in (("gzip", gzip.compress(request)), ("deflate", zlib.compress(request))):
        response = shared_client.post(
            INFER,
            content=packed,
            headers={"Content-Encoding": encoding, "Accept-Encoding": encoding},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-encoding"] == encoding
        assert response.json()["outputs"][1]["data"] == expected  # httpx decompressed it


def test_versioned_route_and_content_type_is_ignored(shared_client: Client) -> None:
    request = json.dumps(payload("infer_flat"))
    response = shared_client.post(
        f"/v2/models/{MODEL}/versions/2/infer",
        content=request,
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    assert response.json()["model_version"] == "2"


def test_v1_predict(shared_client: Client, shared_repo: Path) -> None:
    request = payload("predict_v1")
    response = shared_client.post(f"/v1/models/{MODEL}:predict", json=request)
    assert response.status_code == 200, response.text
    expected = reference(shared_repo / MODEL / "2", np.asarray(request["instances"], np.float32))
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == expected["label"].tolist()
    assert [p["class_name"] for p in predictions] == [str(x) for x in expected["label"]]
    np.testing.assert_allclose(
        [p["probabilities"] for p in predictions], expected["probabilities"], rtol=1e-6
    )
    assert response.headers["x-model-version"] == "2"


def test_request_id_is_echoed_or_generated(shared_client: Client) -> None:
    given = shared_client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = shared_client.get("/v2/health/live").headers["x-request-id"]
    assert len(made) == 32 and made != shared_client.get("/v2/health/live").headers["x-request-id"]
    assert shared_client.get("/nope").headers["x-request-id"]


def test_json_batches_as_clients_write_them_match_onnxruntime(
    shared_client: Client, shared_repo: Path
) -> None:
    """32 rows in one JSON body (well over MIN_BYTES, where simdjson decodes it), written the ways
    clients write them: whole-number floats from float32 arrays, integers from uint8 arrays
    (datatype FP32 and UINT8), and 0..1 floats as Keras tutorials scale them."""
    rows = pixels(32, seed=11)
    expected = reference(shared_repo / MODEL / "2", rows)
    unit = rows / 255
    bodies = {
        "float32 tolist": ("FP32", rows.tolist(), {}),
        "uint8 tolist, FP32": ("FP32", rows.astype(np.uint8).tolist(), {}),
        "uint8 tolist, UINT8": ("UINT8", rows.astype(np.uint8).ravel().tolist(), {}),
        "scaled to 0..1": ("FP32", unit.tolist(), {"pixel_range": "0..1"}),
    }
    for name, (datatype, data, parameters) in bodies.items():
        request = {"inputs": [{"name": "input", "shape": [32, 784], "datatype": datatype,
                               "data": data}], **({"parameters": parameters} if parameters else {})}
        content = json.dumps(request)
        assert len(content) >= MIN_BYTES, name
        response = shared_client.post(INFER, content=content)
        assert response.status_code == 200, (name, response.text)
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        assert outputs["label"]["data"] == expected["label"].tolist(), name
        np.testing.assert_allclose(
            np.array(outputs["probabilities"]["data"], np.float32).reshape(32, 10),
            expected["probabilities"], rtol=1e-5, atol=1e-6, err_msg=name)
