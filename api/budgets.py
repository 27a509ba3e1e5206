"""Spend control at the API's edge: reserve a generation's first task before starting it (or
answer 402), the usage report, the admin route's budget changes, and the periodic
reconciliation with the provider's own count (GET /v1/credits), all exported as metrics.

The rules live in `workflows.budget`; the ledger is the tenant's entity workflow. This module
only maps them onto HTTP and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import date, datetime

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.client import Client

from gptimage2 import GPTImage2Client
from settings import Settings, outbound_trust
from workflows import budget_control, budget_start
from workflows.budget import (
    BudgetName,
    BudgetRefusal,
    LedgerSummary,
    ReserveResult,
    TenantBudget,
    UsageGroup,
    UsageGroupBy,
    WindowState,
)

from .errors import ApiError, ErrorDetail
from .metrics import ApiMetrics
from .temporal import TemporalGateway

log = logging.getLogger("api.budgets")


class BudgetProblem(BaseModel):
    """Which budget a 402 is about, and where it stands."""

    name: BudgetName
    limit: float
    spent: float
    reserved: float
    requested: float
    resets_at: datetime


class BudgetErrorDetail(ErrorDetail):
    budget: BudgetProblem


class BudgetErrorResponse(BaseModel):
    error: BudgetErrorDetail


class BudgetExceeded(ApiError):
    """402: the tenant's budget cannot hold the generation's first task; nothing was started."""

    def __init__(self, refusal: BudgetRefusal) -> None:
        super().__init__(402, "budget_exceeded", refusal.message(), headers=_retry_after(refusal))
        self.refusal = refusal

    def response(self) -> JSONResponse:
        problem = BudgetProblem(name=self.refusal.budget, **self.refusal.model_dump(exclude={"budget"}))
        body = BudgetErrorResponse(
            error=BudgetErrorDetail(type=self.type, message=self.message, budget=problem)
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=402, headers=self.headers)


def _retry_after(refusal: BudgetRefusal) -> dict[str, str]:
    # Only a window's end surely frees room (a running task may also release its reservation).
    return {"Retry-After": refusal.resets_at.strftime("%a, %d %b %Y %H:%M:%S GMT")}


class UsageReport(BaseModel):
    tenant: str
    from_: date = Field(alias="from")
    to: date
    group_by: UsageGroupBy
    groups: list[UsageGroup]

    model_config = {"populate_by_name": True}


class BudgetService:
    def __init__(self, gateway: TemporalGateway, settings: Settings, metrics: ApiMetrics) -> None:
        self.gateway = gateway
        self.settings = settings
        self.metrics = metrics
        # Tenants with a budget in configuration (the same in every API process).
        self.budgets: dict[str, TenantBudget | None] = dict(settings.tenant_budgets)
        # Whether a tenant's ledger holds an admin-set budget, as last read (monotonic time):
        # the ledger is the source of truth, read at most once per budget_cache_seconds.
        self._admin: dict[str, tuple[float, bool]] = {}
        self._reading: dict[str, asyncio.Future[bool]] = {}  # one read per tenant at a time
        self._reconciler: asyncio.Task[None] | None = None
        self._baseline: float | None = None  # provider used - ledgers spent, at the first reading

    def budget_of(self, tenant: str) -> TenantBudget | None:
        return self.budgets.get(tenant)

    async def is_budgeted(self, client: Client, tenant: str) -> bool:
        """Configured here, or given a budget by the admin API through any API process (its
        ledger says so; a budget set elsewhere applies here within budget_cache_seconds)."""
        if tenant in self.budgets:
            return True
        known = self._admin.get(tenant)
        if known is not None and time.monotonic() - known[0] < self.settings.budget_cache_seconds:
            return known[1]
        reading = self._reading.get(tenant)
        if reading is None:
            reading = self._reading[tenant] = asyncio.ensure_future(self._read_admin_budget(client, tenant))
            reading.add_done_callback(lambda _: self._reading.pop(tenant, None))
        return await asyncio.shield(reading)

    async def _read_admin_budget(self, client: Client, tenant: str) -> bool:
        budgeted = await budget_control.has_admin_budget(client, tenant)
        self._note_admin_budget(tenant, budgeted)
        return budgeted

    def _note_admin_budget(self, tenant: str, budgeted: bool) -> None:
        self._admin[tenant] = (time.monotonic(), budgeted)
        if budgeted:
            self.start_reconciling()

    def _admin_budgeted(self) -> list[str]:
        return [tenant for tenant, (_, budgeted) in self._admin.items() if budgeted]

    def start_reconciling(self) -> None:
        """The periodic reconciliation runs once some tenant has a budget (configured, or set
        by the admin API, here or through another API process), unless turned off."""
        if self._reconciler is None and self.settings.budget_reconcile_seconds:
            self._reconciler = asyncio.create_task(self.reconcile_forever())

    async def aclose(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler

    def reserved(self, tenant: str, result: ReserveResult) -> None:
        self.observe(tenant, result.windows)
        for window in result.soft_crossed:
            log.warning("tenant %s crossed its soft budget limit (%s)", tenant, window)

    def refused(self, tenant: str, over: budget_start.OverBudget) -> None:
        self.observe(tenant, over.windows)
        self.metrics.budget_refusals.labels(tenant, over.refusal.budget.value).inc()

    async def usage(
        self, tenant: str, first_day: date, last_day: date, group_by: UsageGroupBy
    ) -> UsageReport:
        async def read(client: Client) -> list[UsageGroup]:
            return await budget_control.usage(
                client, tenant, first_day=first_day, last_day=last_day, group_by=group_by
            )

        groups = await self.gateway.call(read)
        return UsageReport(tenant=tenant, from_=first_day, to=last_day, group_by=group_by, groups=groups)

    async def set_budget(self, tenant: str, budget: TenantBudget) -> LedgerSummary:
        async def update(client: Client) -> LedgerSummary:
            return await budget_control.set_budget(
                client, tenant, budget, task_queue=self.settings.task_queue
            )

        summary = await self.gateway.call(update)
        self._note_admin_budget(tenant, True)
        self.observe(tenant, summary.windows, soft_crossings=summary.soft_crossings)
        return summary

    async def summary(self, tenant: str) -> LedgerSummary | None:
        async def read(client: Client) -> LedgerSummary | None:
            return await budget_control.summary(client, tenant)

        return await self.gateway.call(read)

    def observe(
        self, tenant: str, windows: Iterable[WindowState], *, soft_crossings: int | None = None
    ) -> None:
        """The tenant's windows as gauges (the per-user window is left out: one series per user
        would grow without bound)."""
        metrics = self.metrics
        for window in windows:
            if window.budget is BudgetName.USER_DAILY:
                continue
            labels = (tenant, window.budget.value)
            metrics.budget_spent.labels(*labels).set(window.spent)
            metrics.budget_reserved.labels(*labels).set(window.reserved)
            if window.remaining is not None:
                metrics.budget_remaining.labels(*labels).set(window.remaining)
        if soft_crossings is not None:
            metrics.budget_soft_crossings.labels(tenant).set(soft_crossings)

    async def reconcile_once(self, provider: GPTImage2Client) -> float:
        """Reads both sides, updates the gauges and returns the drift: how much more the
        provider says the key used than the ledgers booked, since the first reading."""

        async def read(client: Client) -> budget_control.Reconciliation:
            tenants = [*self.budgets, *(t for t in self._admin_budgeted() if t not in self.budgets)]
            return await budget_control.reconcile(client, provider, tenants)

        reading = await self.gateway.call(read)
        for summary in reading.summaries:
            self.observe(summary.tenant, summary.windows, soft_crossings=summary.soft_crossings)
        difference = reading.provider_used - reading.ledger_spent
        if self._baseline is None:
            self._baseline = difference
        drift = round(difference - self._baseline, 4)
        self.metrics.provider_used.set(reading.provider_used)
        self.metrics.ledger_spent.set(reading.ledger_spent)
        self.metrics.budget_drift.set(drift)
        self.metrics.budget_reconciliations.inc()
        if drift:
            log.warning("provider used credits drifted from the ledgers by %s", drift)
        return drift

    async def reconcile_forever(self) -> None:
        every = self.settings.budget_reconcile_seconds
        async with GPTImage2Client(
            self.settings.gptimage2_api_key.get_secret_value(),
            self.settings.gptimage2_base_url,
            verify=outbound_trust(self.settings),
        ) as provider:
            while True:
                try:
                    await self.reconcile_once(provider)
                except Exception as exc:  # a reading missed is retried at the next tick
                    log.warning("budget reconciliation failed: %s", exc)
                await asyncio.sleep(every)
