"""Triton's statistics extension over HTTP: GET /v2/models[/{name}[/versions/{v}]]/stats.

The same numbers as the ModelStatistics RPC (service/statistics.py), summed across workers, so
tritonclient's get_inference_statistics works over both protocols. Included before the V2
routes: /v2/models/stats must not be read as the metadata of a model named "stats".
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from service.http.call import json_response
from service.http.deps import DataPlaneDep
from service.models.repository import parse_version
from service.protocol import ErrorResponse

router = APIRouter(tags=["v2"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 404)}


@router.get("/v2/models/stats", responses=ERRORS)
async def all_statistics(dataplane: DataPlaneDep) -> Response:
    """Inference statistics of every served model."""
    return json_response({"model_stats": dataplane.model_statistics(None, None)})


@router.get("/v2/models/{name}/stats", responses=ERRORS)
async def model_statistics(name: str, dataplane: DataPlaneDep) -> Response:
    """Inference statistics of the served version of a model."""
    return json_response({"model_stats": dataplane.model_statistics(name, None)})


@router.get("/v2/models/{name}/versions/{version}/stats", responses=ERRORS)
async def model_version_statistics(name: str, version: str,
                                   dataplane: DataPlaneDep) -> Response:
    """Inference statistics of one version (404 unless it is the served one)."""
    return json_response({"model_stats": dataplane.model_statistics(name,
                                                                    parse_version(version))})
