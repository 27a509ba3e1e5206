"""Client-side operations on a tenant's credit ledger, shared by the API, the worker's ledger
activities and `starter.py`. Never imported by workflow code (it talks to the Temporal service).

Every change goes through update-with-start, so the first reservation of a tenant starts its
ledger and nobody has to create ledgers ahead of time. A retried call (a worker that died
mid-call, a repeated POST) is recognised by the ledger from its reservation id. Not by a
Temporal update id: the server would answer a refused reservation's retry after midnight with
the cached refusal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from gptimage2 import GPTImage2Client
from temporal_client import query_or_none

from .budget import (
    AdjustRequest,
    LedgerState,
    LedgerSummary,
    ReserveRequest,
    ReserveResult,
    SettleRequest,
    TenantBudget,
    UsageGroup,
    UsageGroupBy,
    UsageQuery,
    estimate_credits,
    first_create_params,
    group_usage,
    ledger_workflow_id,
    reservation_id,
    total_spent,
)
from .ledger import BudgetLedgerWorkflow
from .models import GenerationSpec


async def _update(client: Client, tenant: str, task_queue: str, update: Any, arg: Any) -> Any:
    start = WithStartWorkflowOperation(
        BudgetLedgerWorkflow.run,
        LedgerState(tenant=tenant),
        id=ledger_workflow_id(tenant),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"credit ledger of tenant {tenant}",
    )
    return await client.execute_update_with_start_workflow(update, arg, start_workflow_operation=start)


async def reserve(client: Client, tenant: str, request: ReserveRequest, *, task_queue: str) -> ReserveResult:
    result: ReserveResult = await _update(client, tenant, task_queue, BudgetLedgerWorkflow.reserve, request)
    return result


async def settle(client: Client, tenant: str, request: SettleRequest, *, task_queue: str) -> bool:
    booked: bool = await _update(client, tenant, task_queue, BudgetLedgerWorkflow.settle, request)
    return booked


async def release(client: Client, tenant: str, reservation: str, *, task_queue: str) -> bool:
    return await settle(
        client, tenant, SettleRequest(reservation_id=reservation, charged=0), task_queue=task_queue
    )


async def adjust(client: Client, tenant: str, request: AdjustRequest, *, task_queue: str) -> bool:
    changed: bool = await _update(client, tenant, task_queue, BudgetLedgerWorkflow.adjust, request)
    return changed


async def exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def set_budget(
    client: Client, tenant: str, budget: TenantBudget | None, *, task_queue: str
) -> LedgerSummary:
    summary: LedgerSummary = await _update(
        client, tenant, task_queue, BudgetLedgerWorkflow.set_budget, budget
    )
    return summary


def first_reservation(
    generation_id: str, spec: GenerationSpec, configured: TenantBudget | None
) -> ReserveRequest:
    """What the API reserves before it starts a generation: its first provider task (the
    draft's, for draft_first), under the id the workflow knows it by."""
    params = first_create_params(spec)
    return ReserveRequest(
        reservation_id=reservation_id(generation_id, 1),
        generation_id=generation_id,
        user_id=spec.user_id,
        scenario=spec.scenario.value,
        model=params.model,
        credits=estimate_credits(params),
        first=True,
        configured=configured,
    )


async def summary(client: Client, tenant: str) -> LedgerSummary | None:
    """The tenant's budget windows now, or None if it has no ledger (never reserved)."""
    handle = client.get_workflow_handle_for(BudgetLedgerWorkflow.run, ledger_workflow_id(tenant))
    return await query_or_none(handle, BudgetLedgerWorkflow.summary)


async def has_admin_budget(client: Client, tenant: str) -> bool:
    """Whether the tenant's ledger holds a budget set by the admin API (wherever it was set)."""
    found = await summary(client, tenant)
    return found is not None and found.override is not None


async def usage(
    client: Client, tenant: str, *, first_day: date, last_day: date, group_by: UsageGroupBy
) -> list[UsageGroup]:
    """The tenant's usage over [first_day, last_day] (UTC), grouped; empty without a ledger."""
    handle = client.get_workflow_handle_for(BudgetLedgerWorkflow.run, ledger_workflow_id(tenant))
    answer = await query_or_none(
        handle, BudgetLedgerWorkflow.usage, UsageQuery(first_day=first_day, last_day=last_day)
    )
    return group_usage(answer, group_by) if answer is not None else []


@dataclass(frozen=True)
class Reconciliation:
    provider_used: float  # the gateway's used credits for our key (GET /v1/credits)
    ledger_spent: float  # what the tenants' ledgers booked as charged, in total
    summaries: list[LedgerSummary]


async def reconcile(client: Client, provider: GPTImage2Client, tenants: Iterable[str]) -> Reconciliation:
    """One reading of both sides; drift is the change of their difference between readings
    (the key may have spent before the ledgers existed, or for tenants without a budget)."""
    credits = await provider.get_credits()
    summaries = [found for tenant in tenants if (found := await summary(client, tenant)) is not None]
    return Reconciliation(
        provider_used=credits.used_credits, ledger_spent=total_spent(summaries), summaries=summaries
    )
