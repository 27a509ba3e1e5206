from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from workflows.models import GenerationStatus

from ..budgets import BudgetErrorResponse
from ..deps import IdempotencyKey, Services, Tenant, rate_limited_tenant
from ..errors import ERROR_DESCRIPTIONS, error_responses
from ..schemas import GenerationOut, GenerationPage, UserId
from ..validation import parse_create_request

router = APIRouter(
    prefix="/v1/generations",
    tags=["generations"],
    dependencies=[Depends(rate_limited_tenant)],
    # 400, 413, 431: any request, before routing (a path or query that is not UTF-8, sizes).
    responses=error_responses(400, 401, 413, 429, 431, 503),
)

_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateGenerationRequest"}}},
    }
}


@router.post(
    "",
    status_code=202,
    response_model=GenerationOut,
    responses={
        200: {
            "model": GenerationOut,
            "description": "The same key and body were seen before: that generation",
        },
        **error_responses(400, 409, 415, 422),
        402: {"model": BudgetErrorResponse, "description": ERROR_DESCRIPTIONS[402]},
    },
    # The body is parsed by `parse_create_request` (so image checks can join the field errors);
    # its schema is published here and registered in `app.build_openapi`.
    openapi_extra=_CREATE_BODY,
    summary="Start a generation (idempotent per Idempotency-Key)",
)
async def create_generation(
    request: Request, response: Response, services: Services, tenant: Tenant, idempotency_key: IdempotencyKey
) -> GenerationOut:
    try:
        body = await parse_create_request(
            await request.body(), request.headers.get("content-type"), services.images
        )
    except Exception:
        services.metrics.generations.labels("invalid").inc()
        raise
    started = await services.generations.start(tenant, idempotency_key, body)
    response.status_code = 202 if started.created else 200
    return started.generation


@router.get(
    "", response_model=GenerationPage, responses=error_responses(400, 422), summary="List generations"
)
async def list_generations(
    services: Services,
    tenant: Tenant,
    status: GenerationStatus | None = None,
    user_id: Annotated[UserId | None, Query()] = None,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: Annotated[str | None, Query(min_length=1, max_length=4096)] = None,
) -> GenerationPage:
    """From Temporal visibility, newest first. Visibility is eventually consistent: a
    generation started a moment ago may be missing, and statuses may lag by a second. A running
    generation is indexed `queued` until the provider is seen processing (a poll, or its create's
    answer) and never `rehosting` (a copy takes seconds): `GET /v1/generations/{id}` answers the
    live status. Ended statuses are exact."""
    return await services.generations.list(
        tenant, status=status, user_id=user_id, page_size=page_size, page_token=page_token
    )


@router.get("/{generation_id}", response_model=GenerationOut, responses=error_responses(404))
async def get_generation(generation_id: str, services: Services, tenant: Tenant) -> GenerationOut:
    return await services.generations.get(tenant, generation_id)


@router.post(
    "/{generation_id}/cancel",
    response_model=GenerationOut,
    responses=error_responses(404),
    summary="Cancel at any stage; an ended generation is returned unchanged",
)
async def cancel_generation(generation_id: str, services: Services, tenant: Tenant) -> GenerationOut:
    return await services.generations.cancel(tenant, generation_id)


@router.post(
    "/{generation_id}/approve",
    response_model=GenerationOut,
    responses=error_responses(404, 409),
    summary="Approve the draft; the final generation starts",
)
async def approve_generation(generation_id: str, services: Services, tenant: Tenant) -> GenerationOut:
    return await services.generations.decide(tenant, generation_id, approved=True)


@router.post(
    "/{generation_id}/reject",
    response_model=GenerationOut,
    responses=error_responses(404, 409),
    summary="Reject the draft; the generation ends as cancelled",
)
async def reject_generation(generation_id: str, services: Services, tenant: Tenant) -> GenerationOut:
    return await services.generations.decide(tenant, generation_id, approved=False)
