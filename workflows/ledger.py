"""BudgetLedgerWorkflow: one long-lived entity workflow per tenant holding its credit ledger.

Why a workflow: Temporal runs one workflow task at a time per execution, so every reserve and
settle of a tenant is serialized without a lock or a database, and the ledger survives any
process. Callers reach it by update-with-start (workflows.budget_control): the first call
starts it, later calls update the running one, and the update's answer says granted or
refused. Handlers never await: each change is applied whole within one workflow task.
Reservation ids make every call idempotent (a retried activity, a repeated POST), across
continue-as-new too, since the state carries the ids recently settled.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from .budget import (
        Ledger,
        LedgerState,
        LedgerSummary,
        ReserveRequest,
        ReserveResult,
        SettleRequest,
        TenantBudget,
        UsageAnswer,
        UsageQuery,
    )

# A run continues as new after this many changes (or when the server suggests it), long before
# its history nears Temporal's limits; the state it carries is pruned first.
CHANGES_PER_RUN = 500


@workflow.defn
class BudgetLedgerWorkflow:
    @workflow.init
    def __init__(self, state: LedgerState) -> None:
        self._ledger = Ledger(state)
        self._changes = 0

    @workflow.run
    async def run(self, state: LedgerState) -> None:
        await workflow.wait_condition(
            lambda: self._changes >= CHANGES_PER_RUN or workflow.info().is_continue_as_new_suggested()
        )
        # Let every accepted update finish in this run; the next run gets the state after them.
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._ledger.prune(workflow.now())
        workflow.continue_as_new(self._ledger.state)

    @workflow.update
    def reserve(self, request: ReserveRequest) -> ReserveResult:
        self._changes += 1
        result = self._ledger.reserve(request, workflow.now())
        if result.soft_crossed:
            workflow.logger.warning("soft budget limit crossed: %s", ", ".join(result.soft_crossed))
            workflow.metric_meter().create_counter(
                "budget_soft_limit_crossings", "soft budget limits crossed, per tenant"
            ).add(len(result.soft_crossed), {"tenant": self._ledger.state.tenant})
        return result

    @workflow.update
    def settle(self, request: SettleRequest) -> bool:
        self._changes += 1
        return self._ledger.settle(request, workflow.now())

    @workflow.update
    def set_budget(self, budget: TenantBudget | None) -> LedgerSummary:
        self._changes += 1
        self._ledger.set_override(budget)
        return self._ledger.summary(workflow.now())

    @workflow.query
    def summary(self) -> LedgerSummary:
        return self._ledger.summary(workflow.now())

    @workflow.query
    def usage(self, query: UsageQuery) -> UsageAnswer:
        return self._ledger.usage(query)


__all__ = ["BudgetLedgerWorkflow"]
