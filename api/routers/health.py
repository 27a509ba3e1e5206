from __future__ import annotations

from fastapi import APIRouter, Response

from ..deps import Services
from ..errors import ApiError, error_responses
from ..schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=error_responses(503), summary="Temporal is reachable")
async def readyz(services: Services) -> Health:
    if not await services.gateway.ready():
        raise ApiError(503, "service_unavailable", "Temporal is unreachable", headers={"Retry-After": "1"})
    return Health(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}
    },
    summary="Prometheus metrics",
)
async def metrics(services: Services) -> Response:
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
