"""The generation workflow's way to its tenant's credit ledger: a workflow cannot send an update
to another workflow, so these activities do it with the worker's client (update-with-start, as
the API does). Both are idempotent by reservation id, so Temporal may retry them freely: a
worker killed between the ledger's answer and the activity's completion retries the same update
and gets the same answer."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client

from workflows import budget_control
from workflows.budget import STARTED_GENERATIONS, AdjustRequest, ReserveRequest, ReserveResult, SettleRequest


class LedgerActivities:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue  # where ledgers run: the generations' own queue

    @activity.defn
    async def reserve_credits(self, tenant: str, request: ReserveRequest) -> ReserveResult:
        return await budget_control.reserve(self._client, tenant, request, task_queue=self._task_queue)

    @activity.defn
    async def settle_credits(self, tenant: str, request: SettleRequest) -> bool:
        return await budget_control.settle(self._client, tenant, request, task_queue=self._task_queue)

    @activity.defn
    async def adjust_credits(self, tenant: str, request: AdjustRequest) -> bool:
        return await budget_control.adjust(self._client, tenant, request, task_queue=self._task_queue)

    @activity.defn(name=STARTED_GENERATIONS)
    async def started_generations(self, generation_ids: list[str]) -> list[str]:
        """The ledger's check of reservations nobody claimed: which of these generations exist
        (a generation's id is its workflow id)."""
        found = await asyncio.gather(*(budget_control.exists(self._client, g) for g in generation_ids))
        return [g for g, exists in zip(generation_ids, found, strict=True) if exists]
