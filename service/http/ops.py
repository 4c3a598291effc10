"""Operations routes: Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests, latency, queue wait, compute, batch sizes, versions."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
