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

from .budget import (
    BudgetRefusal,
    LedgerState,
    LedgerSummary,
    ReserveRequest,
    ReserveResult,
    SettleRequest,
    TenantBudget,
    UsageAnswer,
    UsageGroup,
    UsageGroupBy,
    UsageQuery,
    WindowState,
    estimate_credits,
    first_create_params,
    group_usage,
    ledger_workflow_id,
    reservation_id,
    total_spent,
)
from .control import StartResult, start_generation
from .ids import generation_workflow_id
from .ledger import BudgetLedgerWorkflow
from .models import GenerationSpec


class OverBudget(Exception):
    """The tenant's budget cannot hold the generation's first task: nothing was started."""

    def __init__(self, refusal: BudgetRefusal, windows: list[WindowState]) -> None:
        super().__init__(refusal.message())
        self.refusal = refusal
        self.windows = windows


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


async def start_within_budget(
    client: Client,
    *,
    tenant: str,
    idempotency_key: str,
    spec: GenerationSpec,
    task_queue: str,
    budgeted: bool,
    configured: TenantBudget | None = None,
) -> tuple[StartResult, ReserveResult | None]:
    """`control.start_generation`, after reserving the first task's credits when the tenant has
    a budget (raises OverBudget, starting nothing, when it cannot hold them). A repeat of the
    same intent finds its reservation and reserves nothing more. `configured`: the tenant's
    budget from the caller's configuration, handed to the ledger (its admin override wins)."""
    reserved = None
    if budgeted:
        generation_id = generation_workflow_id(tenant, spec.user_id, idempotency_key)
        request = first_reservation(generation_id, spec, configured)
        reserved = await reserve(client, tenant, request, task_queue=task_queue)
        if not reserved.granted and reserved.refusal is not None:
            raise OverBudget(reserved.refusal, reserved.windows)
    result = await start_generation(
        client,
        tenant=tenant,
        idempotency_key=idempotency_key,
        spec=spec,
        task_queue=task_queue,
        budgeted=budgeted,
    )
    if reserved is not None and not reserved.repeat and not result.created and result.view.is_terminal:
        # A repeat of an intent that ended long ago (the ledger forgot its reservation id): the
        # reservation just made pays for nothing. A running generation settles its own; and
        # one that failed to start keeps it (conservative: a retry of the POST finds it again).
        await release(client, tenant, reservation_id(result.view.id, 1), task_queue=task_queue)
    return result, reserved


async def summary(client: Client, tenant: str) -> LedgerSummary | None:
    """The tenant's budget windows now, or None if it has no ledger (never reserved)."""
    handle = client.get_workflow_handle_for(BudgetLedgerWorkflow.run, ledger_workflow_id(tenant))
    try:
        return await handle.query(BudgetLedgerWorkflow.summary)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def usage(
    client: Client, tenant: str, *, first_day: date, last_day: date, group_by: UsageGroupBy
) -> list[UsageGroup]:
    """The tenant's usage over [first_day, last_day] (UTC), grouped; empty without a ledger."""
    handle = client.get_workflow_handle_for(BudgetLedgerWorkflow.run, ledger_workflow_id(tenant))
    try:
        answer = await handle.query(
            BudgetLedgerWorkflow.usage, UsageQuery(first_day=first_day, last_day=last_day)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return []
        raise
    return group_usage(answer, group_by)


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


__all__ = ["UsageAnswer"]
