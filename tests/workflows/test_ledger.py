"""The credit ledger's rules (pure, fast) and its entity workflow on the time-skipping server:
a day rollover resets the daily budget, the month's stays; a long-lived ledger continues as new
with its state; a first reservation no generation claimed is released after UNCLAIMED_EXPIRY."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.ledger import LedgerActivities
from gptimage2 import VideoParams
from tests.helpers import assert_eventually
from worker import build_worker
from workflows import budget_control
from workflows.budget import (
    UNCLAIMED_EXPIRY,
    AdjustRequest,
    BudgetName,
    Ledger,
    LedgerState,
    ReserveRequest,
    SettleRequest,
    TenantBudget,
    UsageGroupBy,
    UsageQuery,
    estimate_credits,
    group_usage,
    ledger_workflow_id,
    resets_at,
)
from workflows.ledger import BudgetLedgerWorkflow

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def request(rid: str, credits: float = 10, *, user: str = "u1", first: bool = True) -> ReserveRequest:
    return ReserveRequest(
        reservation_id=rid,
        generation_id=rid.split("/")[0],
        user_id=user,
        scenario="general",
        model="seedance-1.5-pro",
        credits=credits,
        first=first,
    )


def ledger(**budget: float) -> Ledger:
    return Ledger(LedgerState(tenant="t", configured=TenantBudget(**budget)))


# ---- the rules ------------------------------------------------------------------------------


def test_a_reservation_over_the_limit_is_refused_naming_the_budget() -> None:
    book = ledger(daily=25)
    assert book.reserve(request("g1/1"), NOON).granted and book.reserve(request("g2/1"), NOON).granted
    refused = book.reserve(request("g3/1"), NOON)
    assert not refused.granted and refused.refusal is not None
    assert refused.refusal.model_dump() == {
        "budget": BudgetName.DAILY,
        "limit": 25,
        "spent": 0,
        "reserved": 20,
        "requested": 10,
        "resets_at": datetime(2026, 12, 1, tzinfo=UTC),
    }
    assert "g3/1" not in book.state.open


def test_a_repeated_reservation_counts_once() -> None:
    book = ledger(daily=15)
    assert not book.reserve(request("g1/1"), NOON).repeat
    again = book.reserve(request("g1/1"), NOON)
    assert again.granted and again.repeat and len(book.state.open) == 1
    book.settle(SettleRequest(reservation_id="g1/1", charged=10), NOON)
    assert book.reserve(request("g1/1"), NOON).repeat  # settled: still the same reservation
    assert book.state.spent_by_day == {"2026-11-30": 10}


def test_release_frees_the_room_and_a_repeated_settle_changes_nothing() -> None:
    book = ledger(daily=10)
    book.reserve(request("g1/1"), NOON)
    assert not book.reserve(request("g2/1"), NOON).granted
    assert book.settle(SettleRequest(reservation_id="g1/1", charged=0), NOON)
    assert not book.settle(SettleRequest(reservation_id="g1/1", charged=10), NOON)
    assert book.reserve(request("g2/1"), NOON).granted
    [row] = book.state.usage.values()
    assert (row.charged, row.refunded, row.generations) == (0, 10, 2)


def test_the_per_user_daily_limit_holds_one_user_only() -> None:
    book = ledger(per_user_daily=10)
    assert book.reserve(request("g1/1", user="ann"), NOON).granted
    refused = book.reserve(request("g2/1", user="ann"), NOON)
    assert refused.refusal is not None and refused.refusal.budget is BudgetName.USER_DAILY
    assert book.reserve(request("g3/1", user="bob"), NOON).granted


def test_windows_roll_over_at_utc_midnight_and_the_first_of_the_month() -> None:
    book = ledger(daily=10, monthly=25)
    book.reserve(request("g1/1"), NOON)
    book.settle(SettleRequest(reservation_id="g1/1", charged=10), NOON)
    assert not book.reserve(request("g2/1"), NOON).granted
    tomorrow = NOON + timedelta(days=1)  # 1 December: a new day and a new month
    assert book.reserve(request("g2/1"), tomorrow).granted
    assert book.reserve(request("g3/1"), NOON + timedelta(hours=11, minutes=59)).refusal is not None
    assert resets_at(BudgetName.MONTHLY, NOON) == datetime(2026, 12, 1, tzinfo=UTC)
    assert resets_at(BudgetName.MONTHLY, datetime(2026, 12, 31, 23, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )


def test_a_soft_limit_crossing_is_recorded_once_per_window() -> None:
    book = ledger(daily=100, soft_daily=15)
    assert book.reserve(request("g1/1"), NOON).soft_crossed == []
    assert book.reserve(request("g2/1"), NOON).soft_crossed == ["daily 2026-11-30"]
    assert book.reserve(request("g3/1"), NOON).soft_crossed == []
    assert book.state.soft_crossings == 1


def test_an_override_wins_over_the_configured_budget() -> None:
    book = ledger(daily=100)
    book.set_override(TenantBudget(daily=5))
    assert book.reserve(request("g1/1"), NOON).refusal is not None


def test_the_soft_limit_may_not_exceed_the_hard_one() -> None:
    with pytest.raises(ValueError, match="soft_daily must not exceed daily"):
        TenantBudget(daily=5, soft_daily=6)


def test_the_estimate_is_the_models_billing_rule() -> None:
    # The contract's example: 8 s of 720p with audio reserves 50.
    assert estimate_credits(VideoParams(prompt="x", duration=8, quality="720p", generate_audio=True)) == 50


def test_usage_groups_by_each_dimension() -> None:
    book = ledger()
    book.reserve(request("g1/1", user="ann"), NOON)
    book.settle(SettleRequest(reservation_id="g1/1", charged=10, delivered=True), NOON)
    book.reserve(request("g2/1", user="bob"), NOON + timedelta(days=1))
    answer = book.usage(UsageQuery(first_day=date(2026, 11, 1), last_day=date(2026, 12, 31)))
    by_user = {g.key: g for g in group_usage(answer, UsageGroupBy.USER)}
    assert (by_user["ann"].credits_charged, by_user["ann"].credits_per_successful_output) == (10, 10)
    assert (by_user["bob"].credits_reserved, by_user["bob"].generations) == (10, 1)
    assert [g.key for g in group_usage(answer, UsageGroupBy.DAY)] == ["2026-11-30", "2026-12-01"]


def test_pruning_keeps_what_the_rules_still_need() -> None:
    book = ledger(daily=100)
    book.reserve(request("g1/1"), NOON)
    book.settle(SettleRequest(reservation_id="g1/1", charged=10), NOON)
    book.prune(NOON + timedelta(days=1))
    assert "g1/1" in book.state.settled and book.state.spent_by_day
    book.prune(NOON + timedelta(days=200))
    assert not book.state.settled and not book.state.spent_by_day and not book.state.usage
    assert book.state.spent_total == 10


def test_the_provider_figure_replaces_the_estimate_and_claims_the_reservation() -> None:
    book = ledger(daily=25)
    book.reserve(request("g1/1"), NOON)
    assert book.next_expiry() == NOON + UNCLAIMED_EXPIRY
    assert book.adjust(AdjustRequest(reservation_id="g1/1", credits=30))
    assert not book.adjust(AdjustRequest(reservation_id="g1/1", credits=30))  # already that
    assert book.next_expiry() is None  # the generation exists: its task reported the figure
    [daily, _] = book.windows(NOON)
    assert (daily.spent, daily.reserved, daily.remaining) == (0, 30, 0)
    assert not book.reserve(request("g2/1", credits=1), NOON).granted
    book.settle(SettleRequest(reservation_id="g1/1", charged=30), NOON)
    assert not book.adjust(AdjustRequest(reservation_id="g1/1", credits=5))  # settled: nothing held
    [row] = book.state.usage.values()
    assert (row.charged, row.refunded) == (30, 0)


def test_only_unclaimed_first_reservations_expire() -> None:
    book = ledger(daily=100)
    book.reserve(request("g1/1"), NOON)  # its start failed
    book.reserve(request("g2/1"), NOON)  # started, not yet heard of
    book.reserve(request("g3/1"), NOON)  # a retry of g3 reserved since: claimed
    book.reserve(request("g3/2", first=False), NOON)
    later = NOON + UNCLAIMED_EXPIRY
    assert [r.id for r in book.expiring(later - timedelta(seconds=1))] == []
    due = [r.id for r in book.expiring(later)]
    assert due == ["g1/1", "g2/1"]
    assert book.expire(due, started=["g2"]) == ["g1/1"]
    assert book.next_expiry() is None and set(book.state.open) == {"g2/1", "g3/1", "g3/2"}
    [row] = book.state.usage.values()
    assert (row.refunded, row.generations) == (10, 2)
    # Not remembered as settled: a repeat of g1's POST reserves again.
    again = book.reserve(request("g1/1"), later)
    assert again.granted and not again.repeat


# ---- the entity workflow, on the time-skipping server ------------------------------------------


@dataclass
class LedgerRig:
    client: Client
    tenant: str
    task_queue: str
    ended: list[str]  # workflow ids to terminate after the test


@asynccontextmanager
async def ledger_worker(env: WorkflowEnvironment) -> AsyncIterator[LedgerRig]:
    """A worker for one new tenant's ledger. Its workflows are ended after: a ledger's expiry
    timer, left on a queue nobody serves, would hold up the time skipping of every later test
    on the shared server."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    rig = LedgerRig(env.client, tenant, f"ledger-{tenant}", [ledger_workflow_id(tenant)])
    activities = LedgerActivities(rig.client, rig.task_queue)
    try:
        async with build_worker(rig.client, rig.task_queue, [activities.started_generations]):
            yield rig
    finally:
        for workflow_id in rig.ended:
            with contextlib.suppress(RPCError):  # never started, or ended already
                await rig.client.get_workflow_handle(workflow_id).terminate()


async def test_a_day_rollover_resets_the_daily_budget(skipping: WorkflowEnvironment) -> None:
    budget = TenantBudget(daily=10, monthly=1000)
    async with ledger_worker(skipping) as rig:
        client, tenant, task_queue = rig.client, rig.tenant, rig.task_queue
        first = request("g1/1").model_copy(update={"configured": budget})
        assert (await budget_control.reserve(client, tenant, first, task_queue=task_queue)).granted
        await budget_control.settle(
            client, tenant, SettleRequest(reservation_id="g1/1", charged=10), task_queue=task_queue
        )
        refused = await budget_control.reserve(client, tenant, request("g2/1"), task_queue=task_queue)
        assert refused.refusal is not None and refused.refusal.budget is BudgetName.DAILY
        # Skip to just past the next UTC midnight (workflow time is the server's).
        await skipping.sleep(
            refused.refusal.resets_at - await skipping.get_current_time() + timedelta(seconds=1)
        )
        granted = await budget_control.reserve(client, tenant, request("g2/1"), task_queue=task_queue)
        assert granted.granted and not granted.repeat
        summary = await budget_control.summary(client, tenant)
        assert summary is not None and summary.spent_total == 10
        [daily] = [w for w in summary.windows if w.budget is BudgetName.DAILY]
        assert (daily.spent, daily.reserved) == (0, 10)


async def test_the_ledger_continues_as_new_with_its_state(
    skipping: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The workflows package is shared with the sandbox (worker.PASSTHROUGH_MODULES).
    monkeypatch.setattr("workflows.ledger.CHANGES_PER_RUN", 3)
    async with ledger_worker(skipping) as rig:
        client, tenant, task_queue = rig.client, rig.tenant, rig.task_queue
        handle = client.get_workflow_handle(ledger_workflow_id(tenant))
        assert (await budget_control.reserve(client, tenant, request("g0/1"), task_queue=task_queue)).granted
        first_run = (await handle.describe()).run_id
        for n in range(1, 7):
            result = await budget_control.reserve(client, tenant, request(f"g{n}/1"), task_queue=task_queue)
            assert result.granted and not result.repeat
        again = await budget_control.reserve(client, tenant, request("g0/1"), task_queue=task_queue)
        assert again.granted and again.repeat
        assert (await handle.describe()).run_id != first_run
        summary = await budget_control.summary(client, tenant)
        assert summary is not None and summary.open_reservations == 7


async def test_a_reservation_no_generation_claimed_is_released_after_the_expiry(
    skipping: WorkflowEnvironment,
) -> None:
    budget = TenantBudget(daily=20)
    async with ledger_worker(skipping) as rig:
        client, tenant, task_queue = rig.client, rig.tenant, rig.task_queue
        started, failed = f"g-{tenant}-started", f"g-{tenant}-failed"
        rig.ended.append(started)
        for generation in (started, failed):
            reservation = request(f"{generation}/1").model_copy(update={"configured": budget})
            assert (await budget_control.reserve(client, tenant, reservation, task_queue=task_queue)).granted
        # The generation that started: any workflow under its id is one to Temporal (this one
        # is a ledger of nobody's, ended by `ledger_worker`).
        await client.start_workflow(
            BudgetLedgerWorkflow.run, LedgerState(tenant="stand-in"), id=started, task_queue=task_queue
        )
        refused = await budget_control.reserve(client, tenant, request("g-next/1"), task_queue=task_queue)
        assert refused.refusal is not None

        await skipping.sleep(UNCLAIMED_EXPIRY + timedelta(seconds=1))

        async def released() -> bool:
            found = await budget_control.summary(client, tenant)
            return found is not None and found.open_reservations == 1

        await assert_eventually(released, what="the unclaimed reservation released")
        summary = await budget_control.summary(client, tenant)
        assert summary is not None
        [daily] = [w for w in summary.windows if w.budget is BudgetName.DAILY]
        assert (daily.spent, daily.reserved) == (0, 10)
        assert (
            await budget_control.reserve(client, tenant, request("g-next/1"), task_queue=task_queue)
        ).granted
