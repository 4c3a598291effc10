"""Open Inference Protocol (KServe V2 / Triton HTTP) routes: health, metadata, infer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service import codec
from service.errors import ServiceUnavailable
from service.http.body import compress, read_binary_body
from service.http.call import Call, Reply, json_response
from service.http.deps import DataPlaneDep
from service.models.dataplane import DataPlane
from service.models.repository import parse_version
from service.protocol import (
    ErrorResponse,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    ReadyResponse,
)

router = APIRouter(tags=["v2"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 503, 504)
}
INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "A V2 InferenceRequest as JSON; with the binary tensor data extension, "
        "the JSON header (its length in the Inference-Header-Content-Length header) followed "
        "by the raw little-endian tensor bytes. Input `input` has shape [N, 784] (or "
        "[N, 28, 28]) of raw pixel values 0..255; pixels divided by 255 need the request "
        "parameter `pixel_range: \"0..1\"`. Datatype rule: FP32 is native; UINT8..UINT64, "
        "INT8..INT64, FP16 and FP64 are converted to float32 after the 0..255 check (so the "
        "conversion is exact for integers and never overflows); BOOL, BYTES and BF16 are "
        "refused with 400. JSON data may be flat or nested; integer datatypes refuse "
        "fractional JSON numbers. Any Content-Type is accepted; Content-Encoding gzip or "
        "deflate is decoded.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.get("/v2", response_model=MetadataServerResponse)
async def server_metadata(dataplane: DataPlaneDep) -> Response:
    """Server name, version and protocol extensions."""
    return json_response(dataplane.server_metadata())


# Health and readiness answer HEAD too: uptime monitors and some load balancers probe with it.
@router.get("/v2/health/live")
@router.head("/v2/health/live", include_in_schema=False)
async def live() -> Response:
    """200 while the process can answer at all."""
    return json_response({"live": True})


@router.get("/v2/health/ready", response_model=ReadyResponse, responses=ERRORS)
@router.head("/v2/health/ready", include_in_schema=False)
async def ready(dataplane: DataPlaneDep) -> Response:
    """200 when every served model is ready (and at least one is served); 503 while starting,
    shutting down, or after the last model was unloaded."""
    if not dataplane.is_ready():
        raise ServiceUnavailable(f"server is not ready: {dataplane.not_ready_reason()}")
    return json_response({"ready": True})


@router.get("/v2/models/{name}", response_model=MetadataModelResponse, responses=ERRORS)
async def model_metadata(name: str, dataplane: DataPlaneDep) -> Response:
    """The served version of a model with its inputs and outputs."""
    return json_response(dataplane.model_metadata(name, None))


@router.get("/v2/models/{name}/versions/{version}", response_model=MetadataModelResponse,
            responses=ERRORS)
async def model_version_metadata(name: str, version: str, dataplane: DataPlaneDep) -> Response:
    """Metadata of one version (404 unless it is the served one)."""
    return json_response(dataplane.model_metadata(name, parse_version(version)))


@router.get("/v2/models/{name}/config", responses=ERRORS)
async def model_config(name: str, dataplane: DataPlaneDep) -> Response:
    """Triton-style model configuration (batching limits, tensors) of the served version."""
    return json_response(dataplane.model_config(name, None))


@router.get("/v2/models/{name}/versions/{version}/config", responses=ERRORS)
async def model_version_config(name: str, version: str, dataplane: DataPlaneDep) -> Response:
    """Triton-style model configuration of one version (404 unless it is the served one)."""
    return json_response(dataplane.model_config(name, parse_version(version)))


@router.get("/v2/models/{name}/ready", response_model=ReadyResponse, responses=ERRORS)
@router.head("/v2/models/{name}/ready", include_in_schema=False)
async def model_ready(name: str, dataplane: DataPlaneDep) -> Response:
    """200 when the model is loaded and the server takes requests."""
    return _ready(name, None, dataplane)


@router.get("/v2/models/{name}/versions/{version}/ready", response_model=ReadyResponse,
            responses=ERRORS)
@router.head("/v2/models/{name}/versions/{version}/ready", include_in_schema=False)
async def model_version_ready(name: str, version: str, dataplane: DataPlaneDep) -> Response:
    """200 when this version is the served one and the server takes requests."""
    return _ready(name, parse_version(version), dataplane)


def _ready(name: str, version: int | None, dataplane: DataPlane) -> Response:
    dataplane.served_model(name, version)
    if not dataplane.is_ready():
        raise ServiceUnavailable("server is not ready")
    return json_response({"name": name, "ready": True})


# FAST PATH: requests never reach this FastAPI route. HotPath (service/http/fastpath.py) serves
# both infer paths straight from ASGI with `serve_infer` below; these routes document them in
# /openapi.json and serve them only in an app built without the fast path.
@router.post("/v2/models/{name}/infer", response_model=InferenceResponse, responses=ERRORS,
             openapi_extra=INFER_BODY)
async def infer(name: str, request: Request, dataplane: DataPlaneDep) -> Response:
    """Predict: JSON tensors or the binary tensor data extension, as tritonclient sends them."""
    return (await serve_infer(dataplane, Call.from_request(request), name)).response()


# FAST PATH: served by HotPath with `serve_infer`, as the route above.
@router.post("/v2/models/{name}/versions/{version}/infer", response_model=InferenceResponse,
             responses=ERRORS, openapi_extra=INFER_BODY)
async def infer_version(name: str, version: str, request: Request,
                        dataplane: DataPlaneDep) -> Response:
    """Predict with one version (404 unless it is the served one)."""
    return (await serve_infer(dataplane, Call.from_request(request), name, version)).response()


async def serve_infer(dataplane: DataPlane, call: Call, name: str,
                      version: str | None = None) -> Reply:
    """Both infer routes, on FastAPI or on the hot path: read, decode, queue, encode."""
    number = None if version is None else parse_version(version)
    arrived = call.arrived
    with dataplane.admit(name, number) as admitted:
        call.answered_by(admitted.model.name, admitted.model.version)
        header_length = call.headers.get(codec.HEADER_LENGTH)
        body = await read_binary_body(call.receive, call.headers,
                                      dataplane.settings.max_body_bytes, header_length,
                                      dataplane.deadline(arrived))
        dataplane.check_deadline(dataplane.deadline(arrived), arrived)  # not worth decoding
        json_part, binary = codec.split_binary(body, header_length)
        infer_request, tensors = codec.decode_inference_request(json_part, binary)
    model, outputs = await dataplane.infer_v2(name, number, infer_request, tensors, arrived)
    call.answered_by(model.name, model.version)
    payload, headers = codec.encode_inference_response(model.name, model.version,
                                                       infer_request.id, outputs)
    payload, encoding = compress(payload, call.headers.get("accept-encoding"))
    return Reply(payload, headers | encoding)
