"""Health, metadata, metrics and OpenAPI, on a shared in-thread server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import onnxruntime as ort
from prometheus_client.parser import text_string_to_metric_families

from service.http.app import create_app
from tests.service.conftest import MODEL, payload, settings_for
from tests.service.model_repo import write_model
from tests.service.servers import serve_in_thread


def test_health_and_server_metadata(shared_client: httpx.Client) -> None:
    assert shared_client.get("/v2/health/live").json() == {"live": True}
    assert shared_client.get("/v2/health/ready").json() == {"ready": True}
    assert shared_client.get("/v2").json() == {
        "name": "mlp-serve", "version": "0.1.0",
        "extensions": ["binary_tensor_data", "model_repository", "statistics"]}


def test_model_metadata_and_readiness(shared_client: httpx.Client) -> None:
    metadata = shared_client.get(f"/v2/models/{MODEL}").json()
    assert metadata["name"] == MODEL and metadata["versions"] == ["2"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]
    assert metadata["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "label", "datatype": "INT64", "shape": [-1]}]
    assert metadata["parameters"]["labels"] == [str(i) for i in range(10)]
    assert shared_client.get(f"/v2/models/{MODEL}/versions/2").json() == metadata
    assert shared_client.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    assert shared_client.get(f"/v2/models/{MODEL}/versions/2/ready").status_code == 200
    assert shared_client.get(f"/v2/models/{MODEL}/versions/1/ready").status_code == 404
    assert shared_client.get(f"/v1/models/{MODEL}").json() == {"name": MODEL, "ready": True}


def samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_rows_batches_and_versions(shared_client: httpx.Client) -> None:
    before = samples(shared_client)
    for _ in range(3):
        shared_client.post(f"/v2/models/{MODEL}/infer", content=json.dumps(payload("infer_nested")))
    shared_client.post(f"/v2/models/{MODEL}/infer", content=b"{")
    after = samples(shared_client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    endpoint = "/v2/models/{name}/infer"
    assert delta("mlp_requests_total", protocol="http", endpoint=endpoint, model=MODEL, version="2",
                 status="200") == 3
    assert delta("mlp_requests_total", protocol="http", endpoint=endpoint, model=MODEL, version="2",
                 status="400") == 1
    assert delta("mlp_inference_rows_total", model=MODEL, version="2") == 6
    assert delta("mlp_batch_rows_count", model=MODEL) == 3
    assert delta("mlp_batch_rows_sum", model=MODEL) == 6
    assert delta("mlp_queue_wait_seconds_count", model=MODEL) == 3
    assert delta("mlp_compute_seconds_count", model=MODEL) == 3
    # Latency by status: the fast 400 is apart from the three 200s.
    assert delta("mlp_request_duration_seconds_count", protocol="http", endpoint=endpoint,
                 model=MODEL, status="200") == 3
    assert delta("mlp_request_duration_seconds_count", protocol="http", endpoint=endpoint,
                 model=MODEL, status="400") == 1
    assert after[("mlp_model_loaded_version", (("model", MODEL),))] == 2
    assert after[("mlp_queue_rows", (("model", MODEL),))] == 0
    assert shared_client.get("/metrics").headers["content-type"].startswith("text/plain")
    names = {name for name, _ in after}
    assert not [name for name in names if name.endswith("_created")]
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes",
            "process_open_fds"} <= names
    ((_, build),) = [key for key in after if key[0] == "mlp_build_info"]
    assert dict(build)["version"] and dict(build)["onnxruntime"] == ort.__version__


def test_openapi_documents_raw_bodies(shared_client: httpx.Client) -> None:
    schema = shared_client.get("/openapi.json").json()
    infer = schema["paths"]["/v2/models/{name}/infer"]["post"]
    content = infer["requestBody"]["content"]
    assert content["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferenceRequest"}
    assert "application/octet-stream" in content
    components = schema["components"]["schemas"]
    assert {"InferenceRequest", "RequestInput", "RequestOutput", "InferenceResponse",
            "PredictRequest", "ErrorResponse"} <= set(components)
    assert components["InferenceRequest"]["properties"]["inputs"]["items"] == {
        "$ref": "#/components/schemas/RequestInput"}
    assert "version" not in json.dumps(
        schema["paths"]["/v2/models/{name}/infer"]["post"].get("parameters", []))
    docs = shared_client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_two_models_one_pinned(tmp_path: Path) -> None:
    write_model(tmp_path, "digits", 1)
    write_model(tmp_path, "digits", 2)
    write_model(tmp_path, "fashion", 3, classes=4)
    app = create_app(settings_for(tmp_path, models="digits:1, fashion"))
    with serve_in_thread(app) as client:
        assert client.get("/v2/models/digits").json()["versions"] == ["1"]
        fashion = client.get("/v2/models/fashion").json()
        assert fashion["versions"] == ["3"]
        assert fashion["outputs"][0]["shape"] == [-1, 4]
        predicted = client.post("/v1/models/fashion:predict", json={"instances": [[0] * 784]})
        assert len(predicted.json()["predictions"][0]["probabilities"]) == 4
        assert client.get("/v2/models/mnist-mlp").status_code == 404
