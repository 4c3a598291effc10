"""KServe V1 routes: model status and predict with {"instances": [...]}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service import codec
from service.errors import UnsupportedMediaType
from service.http.body import read_body
from service.http.call import Call, Reply, json_response
from service.http.deps import DataPlaneDep
from service.models.dataplane import DataPlane
from service.protocol import ErrorResponse, PredictResponse, V1ModelResponse

router = APIRouter(tags=["v1"])
IMAGE_TYPES = ("image/png", "image/jpeg")

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 503, 504)
}
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PredictRequest"},
            "example": {"instances": [[0] * 784]},
        }},
    }
}


@router.get("/v1/models")
async def list_models(dataplane: DataPlaneDep) -> Response:
    """Names of the served models (KServe V1's model list)."""
    return json_response({"models": dataplane.registry.names()})


@router.get("/v1/models/{name}", response_model=V1ModelResponse, responses=ERRORS)
async def model_status(name: str, dataplane: DataPlaneDep) -> Response:
    """Whether the model is loaded and ready."""
    model = dataplane.served_model(name)
    return json_response({"name": model.name, "ready": dataplane.is_ready()})


# FAST PATH: requests never reach this FastAPI route. HotPath (service/http/fastpath.py) serves
# it straight from ASGI with `serve_predict` below; this route documents it in /openapi.json and
# serves it only in an app built without the fast path.
@router.post("/v1/models/{name}:predict", response_model=PredictResponse, responses=ERRORS,
             openapi_extra=PREDICT_BODY)
async def predict(name: str, request: Request, dataplane: DataPlaneDep) -> Response:
    """Predict label, class name and probabilities for each row of 784 raw pixels, each image
    ({"image_bytes": {"b64": ...}}), or a raw image/png or image/jpeg body."""
    return (await serve_predict(dataplane, Call.from_request(request), name)).response()


async def serve_predict(dataplane: DataPlane, call: Call, name: str) -> Reply:
    """The predict route, on FastAPI or on the hot path: read, decode, queue, encode."""
    arrived = call.arrived
    with dataplane.admit(name, None) as admitted:
        call.answered_by(admitted.model.name, admitted.model.version)
        deadline = dataplane.deadline(arrived)
        body = await read_body(call.receive, call.headers,
                               dataplane.settings.max_body_bytes, deadline)
        dataplane.check_deadline(deadline, arrived)  # not worth decoding
        image = uploaded_image(call, body)
        instances, pixel_range = (image, None) if image else codec.decode_instances(body)
    seen = None
    if isinstance(instances, codec.ImageInstances):
        model, result, rows = await dataplane.infer_v1_images(name, instances, arrived)
        seen = rows if instances.return_model_input else None
    else:
        model, result = await dataplane.infer_v1(name, instances, pixel_range, arrived)
    call.answered_by(model.name, model.version)
    return Reply(codec.encode_predictions(model.labels, result.outputs, seen),
                 {"content-type": codec.JSON_TYPE, "x-model-version": str(model.version)})


def uploaded_image(call: Call, body: bytes) -> codec.ImageInstances | None:
    """A raw image body: Content-Type image/png or image/jpeg, or PNG/JPEG bytes whatever the
    Content-Type says (`curl --data-binary @seven.png` sends form-urlencoded); None for
    anything else, 415 for other image/* types."""
    content_type = call.headers.get("content-type", "")
    if not content_type.startswith("image/"):
        sniffed = body.startswith(codec.PNG_MAGIC) or body.startswith(codec.JPEG_MAGIC)
        return codec.ImageInstances([body], where="image {}") if sniffed else None
    if content_type.split(";")[0].strip() not in IMAGE_TYPES:
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not supported; send "
                                   f"{' or '.join(IMAGE_TYPES)}, or JSON")
    return codec.ImageInstances([body], where="image {}")
