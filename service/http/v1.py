"""KServe V1 routes: model status and predict with {"instances": [...]}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service import codec
from service.http.body import read_body
from service.http.call import Call, Reply, json_response
from service.http.deps import DataPlaneDep
from service.models.dataplane import DataPlane
from service.protocol import ErrorResponse, PredictResponse, V1ModelResponse

router = APIRouter(tags=["v1"])

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
    """Predict label, class name and probabilities for each row of 784 raw pixels."""
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
        instances, pixel_range = codec.decode_instances(body)
    model, result = await dataplane.infer_v1(name, instances, pixel_range, arrived)
    call.answered_by(model.name, model.version)
    return Reply(codec.encode_predictions(model.labels, result.outputs),
                 {"content-type": codec.JSON_TYPE, "x-model-version": str(model.version)})
