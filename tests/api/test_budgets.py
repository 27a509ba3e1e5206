"""Spend control on real servers (Temporal, the simulator, SeaweedFS, the API, the worker):
concurrent POSTs never overshoot a budget, a retry that would cross it fails `budget`, a failed
task's reservation is released, and the usage and admin routes answer for one tenant only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from devstack.testbed import Testbed
from tests.helpers.budget import (
    CHEAP_CREDITS,
    budget_api,
    new_tenant,
    sim_charged,
    window,
)
from tests.helpers.flow import finished, prompt
from workflows import budget_control
from workflows.budget import BudgetName, TenantBudget
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
        assert len(stack.sim.tasks()) >= fits
        refused_texts = [t for t, a in zip(texts, answers, strict=True) if a.status_code == 402]
        assert sim_charged(stack, refused_texts) == 0 and not any(
            stack.sim.tasks(_sha(t)) for t in refused_texts
        )

        daily = window(await api.summary(tenant), BudgetName.DAILY)
        assert (daily.spent, daily.reserved) == (limit, 0)
        assert daily.spent == sim_charged(stack, texts)


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


async def test_concurrent_posts_fill_the_budget_exactly_and_never_overshoot(stack: Testbed) -> None:
    await concurrent_posts_never_overshoot(stack, posts=12, fits=3)


@pytest.mark.slow
async def test_fifty_concurrent_posts_against_a_budget_of_ten(stack: Testbed) -> None:
    await concurrent_posts_never_overshoot(stack, posts=50, fits=10)
