"""Spend-control tests' shared pieces: an API of their own (beside the session's, on the same
Temporal, simulator and worker) with tenants and budgets of a test's own, and readings of the
ledger and of what the simulator charged."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from api.config import ApiConfig
from devstack.ports import free_port
from devstack.testbed import Testbed, serve_api
from workflows import budget_control
from workflows.budget import BudgetName, LedgerSummary, TenantBudget, WindowState

ADMIN_KEY = "budget-tests-admin-key"
# Quick, short, silent and cheap: 4 s of 480p at 3 credits a second (gptimage2.profiles).
CHEAP: dict[str, Any] = {"duration": 4, "quality": "480p", "generate_audio": False}
CHEAP_CREDITS = 12.0
ROOMY = ApiConfig(rate_limit_per_second=10_000, rate_limit_burst=10_000)


@dataclass
class BudgetApi:
    http: httpx.AsyncClient
    keys: dict[str, str]  # tenant -> API key
    stack: Testbed

    def auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    async def create(
        self, tenant: str, prompt: str, *, key: str | None = None, **fields: Any
    ) -> httpx.Response:
        headers = {**self.auth(tenant), "Idempotency-Key": key or uuid.uuid4().hex}
        payload = {"user_id": "user-1", "prompt": prompt, **CHEAP, **fields}
        return await self.http.post("/v1/generations", json=payload, headers=headers)

    async def summary(self, tenant: str) -> LedgerSummary:
        found = await budget_control.summary(self.stack.client, tenant)
        assert found is not None, f"tenant {tenant} has no ledger"
        return found


def admin_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def new_tenant() -> str:
    return f"b-{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def budget_api(
    stack: Testbed,
    budgets: Mapping[str, TenantBudget | None],
    *,
    keys: Mapping[str, str] | None = None,
    reconcile_seconds: float = 0.0,
) -> AsyncIterator[BudgetApi]:
    """An API whose tenants are `budgets`' keys (None: a tenant without a budget). `keys`: the
    tenants' API keys of another `budget_api` (a second replica of the same API)."""
    keys = (
        dict(keys) if keys is not None else {tenant: f"{tenant}-key-{uuid.uuid4().hex}" for tenant in budgets}
    )
    pairs = [f"{tenant}:{key}" for tenant, key in keys.items()]
    settings = stack.settings.model_copy(
        update={
            "api_keys": SecretStr(",".join(pairs)),
            "tenant_budgets": {tenant: budget for tenant, budget in budgets.items() if budget is not None},
            "admin_api_key": SecretStr(ADMIN_KEY),
            "budget_reconcile_seconds": reconcile_seconds,
        }
    )
    port = free_port()
    async with serve_api(settings, stack.client, stack.tls, port, config=ROOMY):
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}", verify=stack.tls.ssl_context(), timeout=60
        ) as http:
            yield BudgetApi(http, keys, stack)


def window(summary: LedgerSummary, name: BudgetName) -> WindowState:
    [found] = [w for w in summary.windows if w.budget is name]
    return found


def sim_charged(stack: Testbed, prompts: list[str]) -> float:
    """Credits the simulator charged for the tasks of these prompts (completed tasks)."""
    total = 0.0
    for text in prompts:
        for task in stack.sim.tasks(hashlib.sha256(text.encode()).hexdigest()):
            if task["status"] == "completed":
                total += float(task["credits_reserved"])
    return total
