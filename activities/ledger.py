"""The generation workflow's way to its tenant's credit ledger: a workflow cannot send an update
to another workflow, so these activities do it with the worker's client (update-with-start, as
the API does). Both are idempotent by reservation id, so Temporal may retry them freely: a
worker killed between the ledger's answer and the activity's completion retries the same update
and gets the same answer."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from workflows import budget_control
from workflows.budget import ReserveRequest, ReserveResult, SettleRequest


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
