"""The admin API of tenants' webhook endpoints (`Authorization: Bearer <ADMIN_API_KEY>`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from workflows.ids import TENANT_PATTERN
from workflows.webhook_models import EventType

from ..deps import Services, admin
from ..errors import ApiError, error_responses


async def admin_of_tenant(
    services: Services, _: Annotated[None, Depends(admin)], tenant: Annotated[str, Path()]
) -> None:
    if tenant not in services.settings.tenant_keys().values():
        raise ApiError(404, "not_found", f"no tenant {tenant[:100]!r} in API_KEYS")


router = APIRouter(
    prefix="/v1/admin/tenants/{tenant}/webhook-endpoints",
    tags=["admin"],
    dependencies=[Depends(admin_of_tenant)],
    responses=error_responses(400, 401, 403, 404, 413, 422, 431, 503),
)

TenantName = Annotated[str, Path(pattern=f"^{TENANT_PATTERN}$")]
EndpointId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2048, description="HTTPS (plain HTTP on a dev stack); public addresses only")
    events: list[EventType] = Field(min_length=1)


class EndpointChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(None, max_length=2048)
    events: list[EventType] | None = Field(None, min_length=1)
    enabled: bool | None = Field(None, description="true re-enables an endpoint a 410 (or an admin) disabled")


@router.get("", summary="The tenant's endpoints (configured and admin-made), and its notify_url secret")
async def list_endpoints(tenant: TenantName, services: Services) -> dict[str, Any]:
    return await services.webhooks.endpoints(tenant)


@router.post("", status_code=201, summary="Add an endpoint; the answer holds its secret")
async def create_endpoint(tenant: TenantName, body: EndpointIn, services: Services) -> dict[str, Any]:
    return await services.webhooks.create(tenant, body.url, body.events)


@router.patch("/{endpoint_id}", summary="Change an endpoint's URL or events, or re-enable/disable it")
async def change_endpoint(
    tenant: TenantName, endpoint_id: EndpointId, body: EndpointChange, services: Services
) -> dict[str, Any]:
    return await services.webhooks.update(
        tenant, endpoint_id, url=body.url, events=body.events, enabled=body.enabled
    )


@router.post(
    "/{endpoint_id}/rotate",
    summary="A new secret; the previous one keeps signing too for WEBHOOK_ROTATION_GRACE_SECONDS",
)
async def rotate_secret(tenant: TenantName, endpoint_id: EndpointId, services: Services) -> dict[str, Any]:
    return await services.webhooks.rotate(tenant, endpoint_id)


@router.delete("/{endpoint_id}", status_code=204, response_class=Response)
async def delete_endpoint(tenant: TenantName, endpoint_id: EndpointId, services: Services) -> Response:
    await services.webhooks.delete(tenant, endpoint_id)
    return Response(status_code=204)
