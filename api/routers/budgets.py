"""GET /v1/usage (the caller's tenant only) and the admin API's budget routes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from workflows.budget import LedgerSummary, TenantBudget, UsageGroupBy

from ..budgets import UsageReport
from ..deps import Services, Tenant, admin, rate_limited_tenant
from ..errors import ApiError, FieldError, error_responses

usage_router = APIRouter(
    prefix="/v1/usage",
    tags=["usage"],
    dependencies=[Depends(rate_limited_tenant)],
    responses=error_responses(400, 401, 413, 429, 431, 503),
)

# Longest span one usage request may cover (the ledger keeps about 100 days).
MAX_USAGE_DAYS = 366


@usage_router.get(
    "",
    response_model=UsageReport,
    response_model_by_alias=True,
    responses=error_responses(422),
    summary="Credits charged, reserved and refunded, generations and deliveries, grouped",
)
async def get_usage(
    services: Services,
    tenant: Tenant,
    from_: Annotated[
        date | None, Query(alias="from", description="first UTC day (default: the 1st of this month)")
    ] = None,
    to: Annotated[date | None, Query(description="last UTC day, inclusive (default: today)")] = None,
    group_by: UsageGroupBy = UsageGroupBy.DAY,
) -> UsageReport:
    """The caller's tenant only, from its credit ledger (empty for a tenant without a budget).
    `credits_reserved` is what running tasks hold now; `credits_per_successful_output` is
    credits charged per delivered final result."""
    today = datetime.now(UTC).date()
    last = to or today
    first = from_ or last.replace(day=1)
    if first > last or (last - first).days >= MAX_USAGE_DAYS:
        message = f"`from` must not be after `to`, and the span at most {MAX_USAGE_DAYS} days"
        raise ApiError(422, "validation_error", message, fields=[FieldError(field="from", message=message)])
    return await services.budgets.usage(tenant, first, last, group_by)


admin_router = APIRouter(
    prefix="/v1/admin/budgets",
    tags=["admin"],
    dependencies=[Depends(admin)],
    responses=error_responses(400, 401, 403, 404, 413, 431, 503),
)


def _known(services: Services, tenant: str) -> str:
    if tenant not in set(services.settings.tenant_keys().values()):
        raise ApiError(404, "not_found", f"no tenant {tenant[:100]!r}")
    return tenant


@admin_router.put(
    "/{tenant}",
    response_model=LedgerSummary,
    responses=error_responses(422),
    summary="Set a tenant's credit budget (overrides the configured one)",
)
async def put_budget(tenant: str, budget: TenantBudget, services: Services) -> LedgerSummary:
    return await services.budgets.set_budget(_known(services, tenant), budget)


@admin_router.get(
    "/{tenant}", response_model=LedgerSummary, summary="A tenant's budget and where each window stands"
)
async def get_budget(tenant: str, services: Services) -> LedgerSummary:
    summary = await services.budgets.summary(_known(services, tenant))
    if summary is None:
        budget = services.budgets.budget_of(tenant)
        return LedgerSummary(
            tenant=tenant, budget=budget, windows=[], spent_total=0.0, open_reservations=0, soft_crossings=0
        )
    return summary
