"""BudgetLedgerWorkflow: one long-lived entity workflow per tenant holding its credit ledger.

Why a workflow: Temporal runs one workflow task at a time per execution, so every reserve and
settle of a tenant is serialized without a lock or a database, and the ledger survives any
process. Callers reach it by update-with-start (workflows.budget_control): the first call
starts it, later calls update the running one, and the update's answer says granted or
refused. Handlers never await: each change is applied whole within one workflow task.
Reservation ids make every call idempotent (a retried activity, a repeated POST), across
continue-as-new too, since the state carries the ids recently settled.

Between changes the run waits; with a first reservation no generation has claimed yet, it waits
at most until that reservation's expiry (budget.UNCLAIMED_EXPIRY), then asks Temporal (one
activity for all that are due) which of their generations exist, and releases the others.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from . import policies
    from .budget import (
        STARTED_GENERATIONS,
        AdjustRequest,
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
# Runs started before unclaimed reservations expired keep waiting without a timer (replay).
PATCH_UNCLAIMED_EXPIRY = "ledger-unclaimed-expiry"


@workflow.defn
class BudgetLedgerWorkflow:
    @workflow.init
    def __init__(self, state: LedgerState) -> None:
        self._ledger = Ledger(state)
        self._changes = 0

    @workflow.run
    async def run(self, state: LedgerState) -> None:
        expiring = workflow.patched(PATCH_UNCLAIMED_EXPIRY)
        while True:
            due = self._ledger.next_expiry() if expiring else None
            if due is not None and due <= workflow.now():
                await self._expire_unclaimed()
            elif await self._wait(due, wake_on_unclaimed=expiring and due is None):
                break
        # Let every accepted update finish in this run; the next run gets the state after them.
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._ledger.prune(workflow.now())
        workflow.continue_as_new(self._ledger.state)

    async def _wait(self, due: datetime | None, *, wake_on_unclaimed: bool) -> bool:
        """Until it is time to continue as new (True), `due`, or a first unclaimed reservation
        when none was due (False). A due time only comes closer with the latter, so a timer is
        started (and cancelled) at most once per reservation that is first to be due."""

        def woken() -> bool:
            return self._should_continue() or (wake_on_unclaimed and self._ledger.next_expiry() is not None)

        try:
            await workflow.wait_condition(
                woken, timeout=None if due is None else (due - workflow.now()).total_seconds()
            )
        except TimeoutError:
            return False
        return self._should_continue()

    def _should_continue(self) -> bool:
        return self._changes >= CHANGES_PER_RUN or workflow.info().is_continue_as_new_suggested()

    async def _expire_unclaimed(self) -> None:
        due = self._ledger.expiring(workflow.now())
        started: list[str] = await workflow.execute_activity(
            STARTED_GENERATIONS,
            sorted({r.generation_id for r in due}),
            result_type=list[str],
            start_to_close_timeout=policies.LEDGER_TIMEOUT,
            retry_policy=policies.LEDGER_RETRY,
        )
        # Settled or claimed meanwhile: `expire` leaves those alone.
        released = self._ledger.expire([r.id for r in due], started)
        self._changes += 1
        if released:
            workflow.logger.warning("released reservations no generation claimed: %s", ", ".join(released))

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
    def adjust(self, request: AdjustRequest) -> bool:
        self._changes += 1
        return self._ledger.adjust(request)

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
