"""KServe V1 routes: model status and predict with {"instances": [...]}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service import codec
from service.deps import DataPlaneDep
from service.logging import arrival_of, note_model
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
    served = dataplane.manager.get(name)
    return codec.json_response({"name": served.model.name, "ready": dataplane.is_ready()})


@router.post("/v1/models/{name}:predict", response_model=PredictResponse, responses=ERRORS,
             openapi_extra=PREDICT_BODY)
async def predict(name: str, request: Request, dataplane: DataPlaneDep) -> Response:
    """Predict label, class name and probabilities for each row of 784 raw pixels."""
    arrived = arrival_of(request)
    admitted = dataplane.admit(name, None)
    note_model(request, admitted.model.name, admitted.model.version)
    body = await codec.read_body(request, dataplane.settings.max_body_bytes)
    deadline = dataplane.deadline(arrived)
    dataplane.check_deadline(deadline, arrived)  # not worth decoding
    rows = dataplane.rows(codec.decode_instances(body), "instances")
    served = dataplane.manager.get(name)  # after the awaits: the version now served answers
    note_model(request, served.model.name, served.model.version)
    result = await dataplane.predict(served, rows, deadline, arrived)
    return Response(codec.encode_predictions(served.model.labels, result.outputs),
                    headers={"content-type": codec.JSON_TYPE,
                             "x-model-version": str(served.model.version)})

