"""Starting a generation within its tenant's credit budget: the one path the API and
`starter.py` share (reserve the first task, then start; over budget, nothing starts)."""

from __future__ import annotations

from temporalio.client import Client

from .budget import BudgetRefusal, ReserveResult, TenantBudget, WindowState, reservation_id
from .budget_control import first_reservation, release, reserve
from .control import StartResult, start_generation
from .ids import generation_workflow_id
from .models import GenerationSpec
from .webhook_plan import WebhookPlan


class OverBudget(Exception):
    """The tenant's budget cannot hold the generation's first task: nothing was started."""

    def __init__(self, refusal: BudgetRefusal, windows: list[WindowState]) -> None:
        super().__init__(refusal.message())
        self.refusal = refusal
        self.windows = windows


async def start_within_budget(
    client: Client,
    *,
    tenant: str,
    idempotency_key: str,
    spec: GenerationSpec,
    task_queue: str,
    budgeted: bool,
    configured: TenantBudget | None = None,
    webhooks: WebhookPlan | None = None,
    metrics_tenant_label: bool = True,
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
        webhooks=webhooks,
        metrics_tenant_label=metrics_tenant_label,
    )
    if reserved is not None and not reserved.repeat and not result.created and result.view.is_terminal:
        # A repeat of an intent that ended long ago (the ledger forgot its reservation id): the
        # reservation just made pays for nothing. A running generation settles its own; and
        # one that failed to start keeps it (conservative: a retry of the POST finds it again).
        await release(client, tenant, reservation_id(result.view.id, 1), task_queue=task_queue)
    return result, reserved
