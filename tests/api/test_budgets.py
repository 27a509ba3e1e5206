"""Spend control on real servers (Temporal, the simulator, SeaweedFS, the API, the worker):
concurrent POSTs never overshoot a budget, a retry that would cross it fails `budget`, a failed
task's reservation is released, and the usage and admin routes answer for one tenant only."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import starter
from api.budgets import BudgetService
from api.config import ApiConfig
from api.metrics import ApiMetrics
from api.temporal import TemporalGateway
from devstack.testbed import Testbed
from gptimage2 import FailureCategory
from settings import Settings
from tests.helpers import assert_eventually
from tests.helpers.api import metric
from tests.helpers.budget import (
    CHEAP,
    CHEAP_CREDITS,
    BudgetApi,
    admin_auth,
    budget_api,
    new_tenant,
    sim_charged,
    window,
)
from tests.helpers.flow import assert_replays, finished, prompt, sim_tasks_for, start
from tests.workflows.test_worker_crash import spawn_worker
from workflows import budget_control
from workflows.budget import BudgetName, LedgerSummary, TenantBudget
from workflows.models import GenerationStatus


def next_midnight() -> datetime:
    today = datetime.now(UTC).date() + timedelta(days=1)
    return datetime(today.year, today.month, today.day, tzinfo=UTC)


async def concurrent_posts_never_overshoot(stack: Testbed, posts: int, fits: int) -> None:
    tenant = new_tenant()
    limit = fits * CHEAP_CREDITS
    async with budget_api(stack, {tenant: TenantBudget(daily=limit, monthly=10 * limit)}) as api:
        texts = [prompt(f"budget race {n}") for n in range(posts)]
        samples: list[float] = []
        done = asyncio.Event()

        async def sample() -> None:
            # What the ledger holds, as often as it answers, until every generation has ended.
            while not done.is_set():
                found = await budget_control.summary(stack.client, tenant)
                if found is not None:
                    daily = window(found, BudgetName.DAILY)
                    samples.append(daily.spent + daily.reserved)

        sampler = asyncio.create_task(sample())
        try:
            answers = await asyncio.gather(*(api.create(tenant, text) for text in texts))
            accepted = [a.json()["id"] for a in answers if a.status_code == 202]
            refused = [a for a in answers if a.status_code == 402]
            assert (len(accepted), len(refused)) == (fits, posts - fits), [a.status_code for a in answers]
            views = await asyncio.gather(*(finished(stack, gid, within=120) for gid in accepted))
        finally:
            done.set()
            await sampler
        assert all(v.status is GenerationStatus.DELIVERED for v in views), [v.failure_message for v in views]
        assert samples and max(samples) <= limit, max(samples)

        problem = refused[0].json()["error"]
        assert problem["type"] == "budget_exceeded" and "daily budget" in problem["message"]
        assert problem["budget"]["name"] == "daily" and problem["budget"]["limit"] == limit
        assert problem["budget"]["requested"] == CHEAP_CREDITS
        assert problem["budget"]["spent"] + problem["budget"]["reserved"] + CHEAP_CREDITS > limit
        assert datetime.fromisoformat(problem["budget"]["resets_at"]) == next_midnight()
        # Nothing was started for a refused request.
        refused_texts = [t for t, a in zip(texts, answers, strict=True) if a.status_code == 402]
        assert not any(sim_tasks_for(stack, t) for t in refused_texts)

        daily = window(await api.summary(tenant), BudgetName.DAILY)
        assert (daily.spent, daily.reserved) == (limit, 0)
        assert daily.spent == sim_charged(stack, texts)


async def test_concurrent_posts_fill_the_budget_exactly_and_never_overshoot(stack: Testbed) -> None:
    await concurrent_posts_never_overshoot(stack, posts=12, fits=3)


@pytest.mark.slow
async def test_fifty_concurrent_posts_against_a_budget_of_ten(stack: Testbed) -> None:
    await concurrent_posts_never_overshoot(stack, posts=50, fits=10)


async def test_a_retry_that_would_cross_the_limit_fails_budget_and_the_failed_task_is_released(
    stack: Testbed,
) -> None:
    tenant = new_tenant()
    async with budget_api(stack, {tenant: TenantBudget(daily=CHEAP_CREDITS)}) as api:
        # The first task fails (transient) when the simulator's clock is moved past its end.
        text = prompt("retry over budget", "#fail=service_errorx1", "#gen=3000")
        answer = await api.create(tenant, text)
        assert answer.status_code == 202, answer.text
        generation_id = answer.json()["id"]
        await assert_eventually(lambda: asyncio.to_thread(sim_tasks_for, stack, text), what="the first task")
        # Meanwhile an operator halves the budget: the running task keeps its reservation.
        put = await api.http.put(
            f"/v1/admin/budgets/{tenant}", json={"daily": CHEAP_CREDITS / 2}, headers=admin_auth()
        )
        assert put.status_code == 200, put.text
        daily = window(LedgerSummary.model_validate(put.json()), BudgetName.DAILY)
        assert (daily.limit, daily.spent, daily.reserved) == (CHEAP_CREDITS / 2, 0, CHEAP_CREDITS)
        await stack.sim.aadvance_clock(3000)

        view = await finished(stack, generation_id)
        assert view.status is GenerationStatus.FAILED and view.failure_category is FailureCategory.BUDGET
        assert view.failure_message and "daily budget" in view.failure_message
        assert view.attempts == 1 and len(sim_tasks_for(stack, text)) == 1  # the retry never started
        await assert_replays(stack, generation_id, "budget-over-on-retry")
        daily = window(await api.summary(tenant), BudgetName.DAILY)
        assert (daily.spent, daily.reserved) == (0, 0)
        usage = await api.http.get("/v1/usage", params={"group_by": "user"}, headers=api.auth(tenant))
        assert usage.status_code == 200, usage.text
        [group] = usage.json()["groups"]
        assert group == {
            "key": "user-1",
            "credits_charged": 0.0,
            "credits_reserved": 0.0,
            "credits_refunded": CHEAP_CREDITS,  # the failed task's reservation, released
            "generations": 1,
            "delivered": 0,
            "credits_per_successful_output": None,
        }


async def test_a_tenant_without_a_budget_has_no_ledger_and_no_ledger_events(stack: Testbed) -> None:
    budgeted, free = new_tenant(), new_tenant()
    async with budget_api(stack, {budgeted: TenantBudget(daily=10 * CHEAP_CREDITS), free: None}) as api:
        texts = {tenant: prompt(f"budget or not {tenant}") for tenant in (budgeted, free)}
        answers = {tenant: await api.create(tenant, text) for tenant, text in texts.items()}
        assert [a.status_code for a in answers.values()] == [202, 202]
        for answer in answers.values():
            assert (await finished(stack, answer.json()["id"])).status is GenerationStatus.DELIVERED
        events = {tenant: await event_names(stack, a.json()["id"]) for tenant, a in answers.items()}
        assert {"settle_credits", "core_patch"} <= events[budgeted]
        await assert_replays(stack, answers[budgeted].json()["id"], "budget-delivered")
        assert not {"reserve_credits", "settle_credits", "core_patch"} & events[free]
        assert await budget_control.summary(stack.client, free) is None

        # Usage is the caller's tenant's only.
        mine = await api.http.get("/v1/usage", params={"group_by": "model"}, headers=api.auth(budgeted))
        [group] = mine.json()["groups"]
        assert (group["key"], group["credits_charged"], group["delivered"]) == (
            "seedance-1.5-pro",
            CHEAP_CREDITS,
            1,
        )
        assert group["credits_per_successful_output"] == CHEAP_CREDITS
        theirs = await api.http.get("/v1/usage", headers=api.auth(free))
        assert theirs.status_code == 200 and theirs.json()["groups"] == []


async def test_usage_and_admin_routes_refuse_bad_requests(stack: Testbed) -> None:
    tenant = new_tenant()
    async with budget_api(stack, {tenant: TenantBudget(daily=1)}) as api:
        path = f"/v1/admin/budgets/{tenant}"
        assert (await api.http.get(path)).status_code == 401
        assert (await api.http.get(path, headers=api.auth(tenant))).status_code == 401  # a tenant key
        assert (await api.http.get("/v1/admin/budgets/nobody", headers=admin_auth())).status_code == 404
        bad = await api.http.put(path, json={"daily": 5, "soft_daily": 9}, headers=admin_auth())
        assert bad.status_code == 422 and "soft_daily must not exceed daily" in bad.text
        negative = await api.http.put(path, json={"monthly": -1}, headers=admin_auth())
        assert negative.status_code == 422 and "monthly" in negative.text
        fresh = await api.http.get(path, headers=admin_auth())
        assert fresh.status_code == 200 and fresh.json()["budget"]["daily"] == 1
        usage = await api.http.get(
            "/v1/usage", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=api.auth(tenant)
        )
        assert usage.status_code == 422 and usage.json()["error"]["fields"][0]["field"] == "from"
        grouped = await api.http.get("/v1/usage", params={"group_by": "colour"}, headers=api.auth(tenant))
        assert grouped.status_code == 422 and "group_by" in grouped.text
        assert (await api.http.get("/v1/usage")).status_code == 401


async def event_names(stack: Testbed, workflow_id: str) -> set[str]:
    """Activity types and marker names (a `workflow.patched` call records `core_patch`) in the
    generation's history."""
    names: set[str] = set()
    async for event in stack.client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            names.add(event.activity_task_scheduled_event_attributes.activity_type.name)
        if event.HasField("marker_recorded_event_attributes"):
            names.add(event.marker_recorded_event_attributes.marker_name)
    return names


async def test_a_repeated_post_reserves_once(stack: Testbed) -> None:
    tenant = new_tenant()
    async with budget_api(stack, {tenant: TenantBudget(daily=2 * CHEAP_CREDITS)}) as api:
        text, key = prompt("budget repeat"), uuid.uuid4().hex
        first = await api.create(tenant, text, key=key)
        repeats = await asyncio.gather(*(api.create(tenant, text, key=key) for _ in range(3)))
        assert first.status_code == 202 and [r.status_code for r in repeats] == [200] * 3
        assert {r.json()["id"] for r in repeats} == {first.json()["id"]}
        daily = window(await api.summary(tenant), BudgetName.DAILY)
        assert daily.spent + daily.reserved == CHEAP_CREDITS
        # So the budget still has room for a second generation, and only one.
        second = await api.create(tenant, prompt("budget repeat, another"))
        assert (
            second.status_code == 202
            and (await api.create(tenant, prompt("one too many"))).status_code == 402
        )
        for answer in (first, second):
            assert (await finished(stack, answer.json()["id"])).status is GenerationStatus.DELIVERED
        late = await api.create(tenant, text, key=key)  # after the generation ended
        assert late.status_code == 200 and late.json()["status"] == "delivered"
        daily = window(await api.summary(tenant), BudgetName.DAILY)
        assert (daily.spent, daily.reserved) == (2 * CHEAP_CREDITS, 0)


async def test_reconciliation_exports_the_drift_between_provider_and_ledgers(stack: Testbed) -> None:
    tenant = new_tenant()
    budget = TenantBudget(daily=100, soft_daily=5)
    settings = stack.settings.model_copy(update={"tenant_budgets": {tenant: budget}})
    metrics = ApiMetrics()
    budgets = BudgetService(TemporalGateway(settings, ApiConfig(), metrics, stack.client), settings, metrics)
    async with stack.provider() as provider, budget_api(stack, {tenant: budget}) as api:
        assert await budgets.reconcile_once(provider) == 0  # the baseline
        budgeted = await api.create(tenant, prompt("reconciled"))
        await finished(stack, budgeted.json()["id"])
        assert await budgets.reconcile_once(provider) == 0
        # Spend the ledgers never saw (a tenant without a budget, on the same provider key).
        unbudgeted = await start(stack, prompt("not in any ledger"), **CHEAP)
        await finished(stack, unbudgeted.view.id)
        assert await budgets.reconcile_once(provider) == CHEAP_CREDITS
    text = metrics.render().decode()
    assert metric(text, "budget_drift_credits") == CHEAP_CREDITS
    assert metric(text, "budget_spent_credits", budget="daily", tenant=tenant) == CHEAP_CREDITS
    assert metric(text, "budget_remaining_credits", budget="daily", tenant=tenant) == 100 - CHEAP_CREDITS
    assert metric(text, "budget_soft_limit_crossings", tenant=tenant) == 1


@pytest.mark.slow
async def test_a_worker_killed_mid_reservation_loses_nothing_and_counts_nothing_twice(
    stack: Testbed, tmp_path: Path
) -> None:
    """The worker is SIGKILLed the moment the retry's reservation is under way, before its
    create: another worker repeats the reservation, which the ledger recognises by its id, and
    the ledger books each task once."""
    task_queue = f"crash-{uuid.uuid4().hex[:8]}"
    crash_stack = stack.with_task_queue(task_queue)
    tenant = new_tenant()
    first = spawn_worker(crash_stack, task_queue, tmp_path / "worker-1.log")
    second = None
    try:
        async with budget_api(crash_stack, {tenant: TenantBudget(daily=3 * CHEAP_CREDITS)}) as api:
            text = prompt("killed mid-reservation", "#fail=service_errorx1")
            answer = await api.create(tenant, text)
            assert answer.status_code == 202, answer.text
            generation_id = answer.json()["id"]

            async def reserving() -> bool:
                if first.poll() is not None:
                    pytest.fail((tmp_path / "worker-1.log").read_text()[-2000:])
                return "reserve_credits" in await event_names(crash_stack, generation_id)

            # As the retry's reservation starts: its update may be on its way, or applied with
            # the activity's completion not yet back. (Later, once the create has started, the
            # kill would test the ambiguous create instead: 120 s before it is given up.)
            await assert_eventually(reserving, within=60, every=0.002, what="the retry's reservation")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            assert len(sim_tasks_for(stack, text)) == 1, "killed too late: the retry's task exists"
            second = spawn_worker(crash_stack, task_queue, tmp_path / "worker-2.log")
            view = await finished(crash_stack, generation_id, within=120)
            assert view.status is GenerationStatus.DELIVERED and view.attempts == 2, view.failure_message

            daily = window(await api.summary(tenant), BudgetName.DAILY)
            assert (daily.spent, daily.reserved) == (CHEAP_CREDITS, 0)
            assert daily.spent == sim_charged(stack, [text])
            usage = await api.http.get("/v1/usage", params={"group_by": "user"}, headers=api.auth(tenant))
            [group] = usage.json()["groups"]
            assert (group["credits_charged"], group["credits_refunded"]) == (CHEAP_CREDITS, CHEAP_CREDITS)
            assert (group["generations"], group["delivered"]) == (1, 1)
    finally:
        for process in (first, second):
            if process and process.poll() is None:
                process.terminate()
                process.wait(10)


async def test_the_starter_reserves_too_and_shows_the_same_usage(
    stack: Testbed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = new_tenant()
    for name, value in stack.worker_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TENANT_BUDGETS", json.dumps({tenant: {"daily": CHEAP_CREDITS}}))
    monkeypatch.setattr("settings.get_settings", Settings)  # not the cached ones of the process
    cheap = ["--duration", "4", "--quality", "480p", "--no-audio", "--json", "--tenant", tenant]

    def generate(key: str) -> list[str]:
        return ["generate", "--user", "user-1", "--key", key, "--prompt", prompt("from a terminal"), *cheap]

    assert await starter.run(generate("first")) == 0
    started = json.loads(capsys.readouterr().out)
    assert await starter.run(generate("second")) == starter.OVER_BUDGET
    assert "daily budget" in capsys.readouterr().err
    assert (await finished(stack, started["id"])).status is GenerationStatus.DELIVERED

    assert await starter.run(["usage", "--tenant", tenant, "--group-by", "user", "--json"]) == 0
    [group] = json.loads(capsys.readouterr().out)
    assert (group["key"], group["credits_charged"], group["generations"]) == ("user-1", CHEAP_CREDITS, 1)


async def test_the_final_after_a_draft_reserves_too(stack: Testbed) -> None:
    """draft_first: the API reserves the draft; the final reserves when it is approved, and a
    budget that cannot hold it fails the generation `budget` with nothing more created."""
    tenant = new_tenant()
    # The draft (4 s, 480p, silent: 12) fits; the draft and the final (12 more) do not.
    async with budget_api(stack, {tenant: TenantBudget(daily=2 * CHEAP_CREDITS - 1)}) as api:
        text = prompt("draft within budget, final over it")
        answer = await api.create(tenant, text, draft_first=True)
        assert answer.status_code == 202, answer.text
        generation_id = answer.json()["id"]

        async def awaiting() -> bool:
            got = await api.http.get(f"/v1/generations/{generation_id}", headers=api.auth(tenant))
            return got.json()["status"] == "awaiting_approval"

        await assert_eventually(awaiting, within=30, what="the draft awaiting approval")
        approved = await api.http.post(f"/v1/generations/{generation_id}/approve", headers=api.auth(tenant))
        assert approved.status_code == 200, approved.text
        view = await finished(stack, generation_id)
        assert view.status is GenerationStatus.FAILED and view.failure_category is FailureCategory.BUDGET
        assert view.draft is not None and view.draft.status is GenerationStatus.DELIVERED
        assert view.attempts == 1 and len(sim_tasks_for(stack, text)) == 1
        daily = window(await api.summary(tenant), BudgetName.DAILY)
        assert (daily.spent, daily.reserved) == (CHEAP_CREDITS, 0)


async def test_a_cancelled_generation_releases_its_reservation(stack: Testbed) -> None:
    tenant = new_tenant()
    async with budget_api(stack, {tenant: TenantBudget(daily=CHEAP_CREDITS)}) as api:
        text = prompt("cancelled while it runs", "#gen=100000")
        answer = await api.create(tenant, text)
        generation_id = answer.json()["id"]
        await assert_eventually(lambda: asyncio.to_thread(sim_tasks_for, stack, text), what="the task")
        cancelled = await api.http.post(f"/v1/generations/{generation_id}/cancel", headers=api.auth(tenant))
        assert cancelled.status_code == 200, cancelled.text
        view = await finished(stack, generation_id)
        assert view.status is GenerationStatus.CANCELLED
        daily = window(await api.summary(tenant), BudgetName.DAILY)
        assert (daily.spent, daily.reserved) == (0, 0)  # the provider refunded the cancelled task
        assert (await api.create(tenant, prompt("room again"))).status_code == 202


async def test_an_admin_budget_holds_on_every_api_replica_and_starts_its_reconciliation(
    stack: Testbed,
) -> None:
    tenant = new_tenant()
    async with (
        budget_api(stack, {tenant: None}, reconcile_seconds=0.1) as one,
        budget_api(stack, {tenant: None}, keys=one.keys, reconcile_seconds=0.1) as other,
    ):

        async def reconciliations(api: BudgetApi) -> float:
            return metric((await api.http.get("/metrics")).text, "budget_reconciliations_total")

        # No tenant has a budget yet: neither replica reconciles.
        put = await one.http.put(
            f"/v1/admin/budgets/{tenant}", json={"daily": CHEAP_CREDITS}, headers=admin_auth()
        )
        assert put.status_code == 200, put.text
        await assert_eventually(lambda: reconciliations(one), what="the reconciliation on the replica set")
        assert await reconciliations(other) == 0
        # The other replica never saw the PUT: the tenant's ledger tells it.
        first = await other.create(tenant, prompt("admin budget elsewhere"))
        assert first.status_code == 202, first.text
        second = await other.create(tenant, prompt("admin budget elsewhere, one too many"))
        assert second.status_code == 402, second.text
        assert second.json()["error"]["budget"]["limit"] == CHEAP_CREDITS
        await assert_eventually(lambda: reconciliations(other), what="the reconciliation on the other")
        assert (await finished(stack, first.json()["id"])).status is GenerationStatus.DELIVERED
        daily = window(await other.summary(tenant), BudgetName.DAILY)
        assert (daily.spent, daily.reserved) == (CHEAP_CREDITS, 0)


async def test_the_reservation_holds_the_providers_own_figure_once_the_task_exists(stack: Testbed) -> None:
    tenant = new_tenant()
    async with budget_api(stack, {tenant: TenantBudget(daily=2 * CHEAP_CREDITS)}) as api:
        # The provider reserves 20 for a task the billing rule estimates at 12.
        text = prompt("reserved above the estimate", "#reserve=20", "#gen=3000")
        answer = await api.create(tenant, text)
        assert answer.status_code == 202, answer.text
        generation_id = answer.json()["id"]

        async def provider_figure_held() -> bool:
            return window(await api.summary(tenant), BudgetName.DAILY).reserved == 20

        await assert_eventually(provider_figure_held, what="the reservation adjusted to 20")
        # 20 + 12 > 24: the estimate alone (12 + 12) would have let this one in.
        assert (await api.create(tenant, prompt("no room left"))).status_code == 402
        await stack.sim.aadvance_clock(3000)
        assert (await finished(stack, generation_id)).status is GenerationStatus.DELIVERED
        assert "adjust_credits" in await event_names(stack, generation_id)
        await assert_replays(stack, generation_id, "budget-adjusted")
        daily = window(await api.summary(tenant), BudgetName.DAILY)
        assert (daily.spent, daily.reserved) == (20, 0) and daily.spent == sim_charged(stack, [text])
