"""Images in over V1 (image_bytes, raw upload) and V2 (BYTES, JSON and binary): the model sees
exactly what service/images makes of them, and bad images are 4xx naming the image."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image

from service.http.app import create_app
from service.images import ImageLimits, to_rows
from tests.service.conftest import MODEL, reference, settings_for
from tests.service.images.pictures import drawing, encode
from tests.service.model_repo import write_model
from tests.service.servers import serve_in_thread

LIMITS = ImageLimits(4 * 1024 * 1024, 4096 * 4096)
SEVEN = encode(drawing(280))
SMALL = encode(drawing(28))
NOISE = encode(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
PREDICT = f"/v1/models/{MODEL}:predict"
INFER = f"/v2/models/{MODEL}/infer"


def with_normalization(folder: Path, value: str | None) -> Path:
    """Set (or drop, for None) model.json's image_normalization; the sha256 covers only the ONNX."""
    card = json.loads((folder / "model.json").read_text())
    card.pop("image_normalization", None)
    if value is not None:
        card["image_normalization"] = value
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist-mlp (mnist-centred), fashion (resize-only), legacy (no field), pixels-only (none)."""
    root = tmp_path_factory.mktemp("images") / "models"
    with_normalization(write_model(root, MODEL, 1), "mnist-centred")
    with_normalization(write_model(root, "fashion", 1), "resize-only")
    with_normalization(write_model(root, "legacy", 1), None)
    with_normalization(write_model(root, "pixels-only", 1), "none")
    return root


@pytest.fixture(scope="module")
def client(repo: Path) -> Iterator[httpx.Client]:
    with serve_in_thread(create_app(settings_for(repo))) as http:
        yield http


def expected(repo: Path, blobs: list[bytes], method: str = "mnist-centred",
             model: str = MODEL) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rows = to_rows(blobs, method, LIMITS)
    return rows, reference(repo / model / "1", rows)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def v1_images(*blobs: bytes, **extra: Any) -> dict[str, Any]:
    return {"instances": [{"image_bytes": {"b64": b64(blob)}} for blob in blobs], **extra}


def test_v1_image_bytes_predict_what_the_normalized_rows_predict(client: httpx.Client,
                                                                  repo: Path) -> None:
    response = client.post(PREDICT, json=v1_images(SEVEN, SMALL))
    assert response.status_code == 200, response.text
    _, want = expected(repo, [SEVEN, SMALL])
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == want["label"].tolist()
    np.testing.assert_allclose([p["probabilities"] for p in predictions], want["probabilities"],
                               rtol=1e-5)
    assert "model_input" not in predictions[0]


def test_v1_returns_the_model_input_on_request(client: httpx.Client, repo: Path) -> None:
    body = v1_images(SEVEN, parameters={"return_model_input": True})
    prediction = client.post(PREDICT, json=body).json()["predictions"][0]
    rows, _ = expected(repo, [SEVEN])
    assert prediction["model_input"] == rows[0].astype(int).tolist()
    assert len(prediction["model_input"]) == 784 and max(prediction["model_input"]) == 255


@pytest.mark.parametrize("content_type", ["image/png", "image/png; charset=binary",
                                          "application/x-www-form-urlencoded"])
def test_raw_upload(client: httpx.Client, repo: Path, content_type: str) -> None:
    response = client.post(PREDICT, content=SEVEN, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    _, want = expected(repo, [SEVEN])
    assert response.json()["predictions"][0]["label"] == int(want["label"][0])


def test_raw_jpeg_upload(client: httpx.Client, repo: Path) -> None:
    jpeg = encode(drawing(200).convert("RGB"), "JPEG", quality=92)
    response = client.post(PREDICT, content=jpeg, headers={"content-type": "image/jpeg"})
    _, want = expected(repo, [jpeg])
    assert response.json()["predictions"][0]["label"] == int(want["label"][0])


def test_each_model_normalizes_as_its_card_says(client: httpx.Client, repo: Path) -> None:
    for model, method in (("fashion", "resize-only"), ("legacy", "resize-only")):
        body = v1_images(SEVEN, parameters={"return_model_input": True})
        prediction = client.post(f"/v1/models/{model}:predict", json=body).json()["predictions"][0]
        rows, want = expected(repo, [SEVEN], method, model)
        assert prediction["model_input"] == rows[0].astype(int).tolist()
        assert prediction["label"] == int(want["label"][0])
        parameters = client.get(f"/v2/models/{model}").json()["parameters"]
        assert parameters["image_normalization"] == method


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("shape", [[2], [2, 1]], ids=["N", "Nx1"])
def test_v2_bytes_from_tritonclient(client: httpx.Client, repo: Path, binary: bool,
                                    shape: list[int]) -> None:
    triton_client = triton.InferenceServerClient(url=str(client.base_url).removeprefix("http://"))
    elements = [SEVEN, SMALL] if binary else [b64(SEVEN).encode(), b64(SMALL).encode()]
    tensor = triton.InferInput("input", shape, "BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=np.object_).reshape(shape),
                               binary_data=binary)
    result = triton_client.infer(MODEL, [tensor])
    triton_client.close()
    assert_as_in_process(result, repo, [SEVEN, SMALL])


def assert_as_in_process(result: Any, repo: Path, blobs: list[bytes]) -> None:
    """A tritonclient result (HTTP or gRPC) says what onnxruntime says for these images."""
    _, want = expected(repo, blobs)
    np.testing.assert_array_equal(result.as_numpy("label"), want["label"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"],
                               rtol=1e-5)


def v2_bytes(data: Any, shape: list[int]) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": shape, "datatype": "BYTES", "data": data}]}


def binary_bytes(elements: list[bytes], shape: list[int]) -> tuple[bytes, dict[str, str]]:
    blob = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    header = json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob)}}]}).encode()
    return header + blob, {"inference-header-content-length": str(len(header))}


GIF = encode(drawing(20), "GIF")
TRUNCATED_HEADER = json.dumps({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES",
                                            "parameters": {"binary_data_size": 2}}]}).encode()
TRUNCATED = (TRUNCATED_HEADER + b"\x01\x00",
             {"inference-header-content-length": str(len(TRUNCATED_HEADER))})
BAD_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("mixed, image first", PREDICT, {"json": {"instances": [
        {"image_bytes": {"b64": b64(SMALL)}}, [0] * 784]}}, 400,
     "instances[1]: instances mix images and pixel rows; send one kind per request"),
    ("mixed, row first", PREDICT, {"json": {"instances": [
        [0] * 784, {"image_bytes": {"b64": b64(SMALL)}}]}}, 400,
     "instances mix pixel rows and images; send one kind per request"),
    ("wrong key", PREDICT, {"json": {"instances": [{"b64": b64(SMALL)}]}}, 400,
     'instances[0]: expected {"image_bytes": {"b64": "<base64 PNG or JPEG>"}}, got keys '
     "['b64']"),
    ("bad base64", PREDICT, {"json": v1_images(SMALL) | {"instances": [
        {"image_bytes": {"b64": b64(SMALL)}}, {"image_bytes": {"b64": "%%%"}}]}}, 400,
     "instances[1]: not valid base64 (expected the base64 of a PNG or JPEG file)"),
    ("GIF in V1", PREDICT, {"json": v1_images(SMALL, SMALL, GIF)}, 400,
     "instances[2]: a GIF file; send PNG or JPEG"),
    ("raw GIF", PREDICT, {"content": GIF, "headers": {"content-type": "image/gif"}}, 415,
     "Content-Type 'image/gif' is not supported; send image/png or image/jpeg, or JSON"),
    ("raw corrupt PNG", PREDICT, {"content": SEVEN[:100],
                                  "headers": {"content-type": "image/png"}}, 400,
     "image 0: corrupt PNG data (image file is truncated)"),
    ("raw text as PNG", PREDICT, {"content": b"hello", "headers": {"content-type": "image/png"}},
     400, "image 0: not a PNG or JPEG file"),
    ("too many images", PREDICT, {"json": v1_images(*[SMALL] * 65)}, 400,
     "65 images in one request, over the limit of 64 (MLP_MAX_ROWS_PER_REQUEST); split the "
     "batch"),
    ("pixels-only model", "/v1/models/pixels-only:predict", {"json": v1_images(SMALL)}, 400,
     "model 'pixels-only' does not take images (its card says image_normalization 'none'); "
     "send pixel rows"),
    ("V2 shape [1, 2]", INFER, {"json": v2_bytes([[b64(SMALL), b64(SMALL)]], [1, 2])}, 400,
     "input 'input': BYTES shape [1, 2]; expected [N] or [N, 1] encoded images"),
    ("V2 count", INFER, {"json": v2_bytes([b64(SMALL)], [2])}, 400,
     "input 'input': shape [2] needs 2 BYTES elements but data has 1"),
    ("V2 JSON corrupt element", INFER, {"json": v2_bytes([b64(SMALL), b64(b"x")], [2])}, 400,
     "input 'input' element 1: not a PNG or JPEG file"),
    ("V2 binary truncated length", INFER, {"content": TRUNCATED[0], "headers": TRUNCATED[1]},
     400, "input 'input': BYTES element 0 has a truncated 4-byte length prefix"),
]


@pytest.mark.parametrize(("path", "request_args", "status", "message"),
                         [case[1:] for case in BAD_CASES], ids=[case[0] for case in BAD_CASES])
def test_bad_images_are_4xx_naming_the_image(client: httpx.Client, path: str,
                                             request_args: dict[str, Any], status: int,
                                             message: str) -> None:
    response = client.post(path, **request_args)
    assert (response.status_code, response.json()) == (status, {"error": message})


def test_v2_binary_bytes_element_overrun(client: httpx.Client) -> None:
    body, headers = binary_bytes([SMALL], [1])
    header_length = int(headers["inference-header-content-length"])
    broken = body[:header_length] + struct.pack("<I", 10**6) + body[header_length + 4:]
    response = client.post(INFER, content=broken, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == (f"input 'input': BYTES element 0 claims 1000000 bytes "
                                        f"but {len(SMALL)} remain")


def test_image_limits_are_413(repo: Path) -> None:
    settings = settings_for(repo, max_image_bytes=2000, max_image_pixels=10_000)
    with serve_in_thread(create_app(settings)) as http:
        big = http.post(PREDICT, json=v1_images(SMALL, NOISE))
        wide = http.post(PREDICT, content=encode(Image.new("L", (200, 60))),
                         headers={"content-type": "image/png"})
    assert big.status_code == 413
    assert big.json()["error"] == (f"instances[1]: {len(NOISE)} bytes, over the limit of 2000 "
                                   "bytes per image (MLP_MAX_IMAGE_BYTES)")
    assert (wide.status_code, wide.json()["error"]) == (
        413, "image 0: 200x60 = 12000 pixels, over the limit of 10000 pixels per image "
        "(MLP_MAX_IMAGE_PIXELS)")


def test_served_models_are_listed(client: httpx.Client) -> None:
    assert client.get("/v1/models").json() == {
        "models": ["fashion", "legacy", MODEL, "pixels-only"]}


PARITY_CASES: list[tuple[str, dict[str, Any]]] = [
    (PREDICT, {"json": v1_images(SEVEN, parameters={"return_model_input": True})}),
    (PREDICT, {"content": SMALL, "headers": {"content-type": "image/png"}}),
    (PREDICT, {"content": SMALL}),  # no image Content-Type: the PNG signature tells
    (PREDICT, {"content": GIF, "headers": {"content-type": "image/gif"}}),
    (PREDICT, {"json": v1_images(SMALL, GIF)}),
    (INFER, {"json": v2_bytes([b64(SEVEN)], [1, 1])}),
    (INFER, dict(zip(("content", "headers"), binary_bytes([SEVEN, SMALL], [2]), strict=True))),
]


def test_fast_path_answers_images_byte_for_byte_as_fastapi(repo: Path) -> None:
    hot_app, plain_app = (create_app(settings_for(repo)) for _ in range(2))
    plain_app.hot_routes = ()  # type: ignore[attr-defined]
    seen = []
    for app in (hot_app, plain_app):
        with serve_in_thread(app) as http:
            answers = []
            for path, args in PARITY_CASES:
                response = http.post(path, **args)
                kept = {k: v for k, v in response.headers.items()
                        if k not in ("x-request-id", "date")}
                answers.append((response.status_code, kept, response.content))
            seen.append(answers)
    assert [status for status, _, _ in seen[0]] == [200, 200, 200, 415, 400, 200, 200]
    assert seen[0] == seen[1]
