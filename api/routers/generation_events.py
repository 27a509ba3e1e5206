"""A generation's live progress (Server-Sent Events) and its webhook deliveries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from workflows.webhook_models import DeliveryRecord

from ..deps import Services, Tenant, rate_limited_tenant
from ..errors import FieldError, error_responses, invalid

router = APIRouter(
    prefix="/v1/generations",
    tags=["generations"],
    dependencies=[Depends(rate_limited_tenant)],
    responses=error_responses(400, 401, 404, 413, 429, 431, 503),
)


class DeliveryList(BaseModel):
    data: list[DeliveryRecord]


@router.get(
    "/{generation_id}/deliveries",
    response_model=DeliveryList,
    summary="Webhook deliveries of a generation: each event, each endpoint, each attempt",
)
async def list_deliveries(generation_id: str, services: Services, tenant: Tenant) -> DeliveryList:
    return DeliveryList(data=await services.webhooks.deliveries(tenant, generation_id))


@router.get(
    "/{generation_id}/events",
    response_class=EventSourceResponse,
    responses={**error_responses(422), 200: {"content": {"text/event-stream": {}}}},
    summary="Live progress as Server-Sent Events (status, stage, progress, ETA); ends with the terminal state",
)
async def progress_events(
    generation_id: str,
    services: Services,
    tenant: Tenant,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Each event's `id` is the generation's own sequence number of changes; reconnect with
    `Last-Event-ID` and the stream goes on after that event. The last event (`end`) is the
    terminal state."""
    after = 0
    if last_event_id is not None:
        if not last_event_id.isdigit() or len(last_event_id) > 9:
            message = "Last-Event-ID must be an event id this stream sent (a number)"
            raise invalid([FieldError(field="Last-Event-ID", message=message)])
        after = int(last_event_id)
    await services.generations.get(tenant, generation_id)  # 404 before the stream opens

    async def stream() -> AsyncIterator[dict[str, Any]]:
        async for event in services.progress.events(generation_id, after):
            yield {
                "id": str(event.seq),
                "event": "end" if event.is_terminal else "progress",
                "data": event.model_dump_json(),
            }

    return EventSourceResponse(stream())
