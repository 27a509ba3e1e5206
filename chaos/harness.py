"""What every scenario does: start generations, wait for them through whatever the scenario
breaks, play ops for creates whose outcome is unknown, and check what was delivered against the
bucket and the simulator's own record of the tasks it made."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
from minio import Minio
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from chaos.servers import ChaosServers
from devstack.state import DEFAULTS
from gptimage2 import VideoParams
from storage import manifest_key
from temporal_client import connect
from workflows.control import ResolutionRefused, describe_generation, resolve_create, start_generation
from workflows.generation import VideoGenerationWorkflow
from workflows.models import (
    ActivityErrorType,
    CreateResolution,
    FailureCategory,
    GenerationSpec,
    GenerationStatus,
    GenerationView,
    RetryBudget,
)
from workflows.policies import AMBIGUOUS_CREATE_TAIL, CALLBACK_DELIVERY_SPAN

TENANT = "demo"
# Timing knobs for every generation of the run (GenerationInput's tuning fields).
POLL_INITIAL_SECONDS = 4.0
POLL_MAX_SECONDS = 15.0
HEARTBEAT_TIMEOUT_SECONDS = 5.0
# Ops look at generations running longer than this (a human would get the alert later).
OPS_AFTER_SECONDS = 20.0


class Expect(StrEnum):
    DELIVERED = "delivered"
    POLICY = "policy"
    EXPIRED = "expired"


@dataclass
class Started:
    id: str
    prompt: str
    expect: Expect
    at: float  # monotonic

    @property
    def prompt_sha256(self) -> str:
        return hashlib.sha256(self.prompt.encode()).hexdigest()


@dataclass
class Checked:
    """A scenario's counts: `lost` is every generation that did not end as it must, plus every
    object, task or hash that does not add up."""

    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.problems)


def tenant_key() -> str:
    pairs = DEFAULTS.api_keys.get_secret_value().split(",")
    return next(pair.split(":", 1)[1] for pair in pairs if pair.startswith(f"{TENANT}:"))


class Harness:
    def __init__(self, servers: ChaosServers, client: Client) -> None:
        self.servers = servers
        self.client = client
        self.store: Minio = servers.s3.minio_client()
        self.rng = random.Random(15)
        self.ops_resolved: Counter[str] = Counter()
        self.api = httpx.AsyncClient(
            base_url=servers.settings.callback_base_url,
            verify=servers.tls.ssl_context(),
            headers={"Authorization": f"Bearer {tenant_key()}"},
            timeout=10,
        )

    @classmethod
    async def connect(cls, servers: ChaosServers) -> Harness:
        return cls(servers, await connect(servers.settings))

    def refresh_store(self) -> None:
        self.store = self.servers.s3.minio_client()

    # ---- starting ----------------------------------------------------------------------------

    def tuning(self, params: VideoParams) -> dict[str, Any]:
        # The unknown-create window the provider's word gives (workflows.policies), in the
        # simulator's time: its clock runs `time_scale` times faster than ours.
        stated = params.profile.estimated_generation_seconds(params) * AMBIGUOUS_CREATE_TAIL
        window = stated / self.servers.time_scale + CALLBACK_DELIVERY_SPAN.total_seconds()
        return {
            "poll_initial_seconds": POLL_INITIAL_SECONDS,
            "poll_max_seconds": POLL_MAX_SECONDS,
            "heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_SECONDS,
            "ambiguous_create_window_seconds": window,
        }

    async def start(
        self,
        text: str,
        expect: Expect = Expect.DELIVERED,
        *,
        budget: RetryBudget | None = None,
        tuning: dict[str, Any] | None = None,
        **params: Any,
    ) -> Started:
        prompt = f"{text} [chaos {uuid.uuid4().hex[:10]}]"
        fields = {"quality": "480p", "duration": 4, "generate_audio": False, **params}
        spec = GenerationSpec(user_id="chaos", prompt=prompt, **fields)
        result = await start_generation(
            self.client,
            tenant=TENANT,
            idempotency_key=uuid.uuid4().hex,
            spec=spec,
            task_queue=self.servers.settings.task_queue,
            budget=budget,
            tuning={**self.tuning(spec.params), **(tuning or {})},
        )
        return Started(result.view.id, prompt, expect, time.monotonic())

    async def start_paced(self, plan: list[tuple[str, Expect]], per_second: float) -> list[Started]:
        """Starts the planned generations at about `per_second` (load shape, not synchronisation)."""
        started = []
        for text, expect in plan:
            started.append(await self.start(text, expect))
            await asyncio.sleep(1 / per_second)
        return started

    # ---- waiting -----------------------------------------------------------------------------

    async def result(self, started: Started, deadline: float) -> GenerationView:
        """The generation's end, riding out a Temporal server that is away; its live view if it
        has not ended by `deadline` (monotonic)."""
        handle = self.client.get_workflow_handle_for(VideoGenerationWorkflow.run, started.id)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return await self.view(started)
            try:
                return await asyncio.wait_for(handle.result(), left)
            except TimeoutError:
                continue
            except RPCError:
                await asyncio.sleep(1)  # the server is restarting: ask again

    async def view(self, started: Started) -> GenerationView:
        for _ in range(30):
            try:
                return await describe_generation(self.client, started.id)
            except RPCError:
                await asyncio.sleep(1)
        return await describe_generation(self.client, started.id)

    async def settle(self, generations: list[Started], within: float) -> list[GenerationView]:
        """Every generation's end (or its view at the deadline), ops resolving unknown creates
        meanwhile as a human would: by the provider's dashboard (the simulator's task list)."""
        deadline = time.monotonic() + within
        pending = {g.id for g in generations}

        async def one(started: Started) -> GenerationView:
            view = await self.result(started, deadline)
            pending.discard(started.id)
            return view

        ops = asyncio.create_task(self._ops(generations, pending))
        try:
            return list(await asyncio.gather(*(one(g) for g in generations)))
        finally:
            ops.cancel()

    async def _ops(self, generations: list[Started], pending: set[str]) -> None:
        while True:
            await asyncio.sleep(5)  # a human's round, not synchronisation
            for started in generations:
                if started.id in pending and time.monotonic() - started.at > OPS_AFTER_SECONDS:
                    try:
                        await self._ops_look(started)
                    except (RPCError, ResolutionRefused, httpx.HTTPError):
                        continue

    async def _ops_look(self, started: Started) -> None:
        view = await describe_generation(self.client, started.id)
        if view.unresolved_create is None:
            return
        known = {*view.provider_task_ids, *(o.task_id for o in view.orphans)}
        tasks = await asyncio.to_thread(self.servers.sim.tasks, started.prompt_sha256)
        unknown = [t["id"] for t in tasks if t["id"] not in known]
        resolution = CreateResolution(task_id=unknown[0] if unknown else None, note="chaos ops: dashboard")
        await resolve_create(self.client, started.id, resolution)
        self.ops_resolved["adopted" if unknown else "created again"] += 1

    # ---- what the histories say -------------------------------------------------------------

    async def history_counts(self, generations: list[Started]) -> Counter[str]:
        """From the recorded histories: creates whose outcome was unknown (failed as ambiguous
        or timed out: reconciled, never repeated), re-host attempts after the first (a worker
        killed or a store away mid-copy), and ops resolutions."""
        counts: Counter[str] = Counter()
        for started in generations:
            history = await self.client.get_workflow_handle(started.id).fetch_history()
            kinds: dict[int, str] = {}
            for event in history.events:
                if event.HasField("activity_task_scheduled_event_attributes"):
                    kinds[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
                elif event.HasField("activity_task_failed_event_attributes"):
                    failed = event.activity_task_failed_event_attributes
                    ambiguous = (
                        failed.failure.application_failure_info.type == ActivityErrorType.CREATE_AMBIGUOUS
                    )
                    counts["creates unknown"] += (
                        ambiguous and kinds[failed.scheduled_event_id] == "create_task"
                    )
                elif event.HasField("activity_task_timed_out_event_attributes"):
                    scheduled = event.activity_task_timed_out_event_attributes.scheduled_event_id
                    counts["creates unknown"] += kinds[scheduled] == "create_task"
                elif event.HasField("activity_task_started_event_attributes"):
                    started_event = event.activity_task_started_event_attributes
                    if kinds[started_event.scheduled_event_id] == "rehost_result":
                        counts["re-host retries"] += started_event.attempt - 1
        return counts

    # ---- checking ----------------------------------------------------------------------------

    async def check(self, generations: list[Started], views: list[GenerationView]) -> Checked:
        checked = Checked()
        ended: Counter[str] = Counter()
        for started, view in zip(generations, views, strict=True):
            outcome = (
                view.status.value
                if view.status is not GenerationStatus.FAILED
                else f"failed/{view.failure_category}"
            )
            ended[outcome] += 1
            if not _as_expected(started.expect, view):
                checked.problems.append(
                    f"{started.id}: {view.status.value} {view.failure_category} {view.failure_message} ({view.stage})"
                )
        checked.counts["ended"] = dict(ended)
        executions = await self.execution_statuses(generations)
        failed_runs = sum(1 for status in executions if status != WorkflowExecutionStatus.COMPLETED)
        checked.counts["workflow failures"] = failed_runs
        if failed_runs:
            checked.problems.append(f"{failed_runs} workflow executions did not complete")
        await asyncio.to_thread(self._check_objects, generations, views, checked)
        await asyncio.to_thread(self._check_tasks, generations, views, checked)
        return checked

    async def execution_statuses(self, generations: list[Started]) -> list[WorkflowExecutionStatus | None]:
        async def one(started: Started) -> WorkflowExecutionStatus | None:
            return (await self.client.get_workflow_handle(started.id).describe()).status

        return list(await asyncio.gather(*(one(g) for g in generations)))

    def _check_objects(
        self, generations: list[Started], views: list[GenerationView], checked: Checked
    ) -> None:
        """The bucket holds exactly the delivered outputs (each with its manifest), each with
        the bytes its recorded sha256 names; no upload left unfinished."""
        expected = {o.object_key: o for view in views for o in view.outputs}
        ids = {g.id for g in generations}
        found: set[str] = set()
        strays = 0
        for obj in self.store.list_objects(
            self.servers.s3.bucket, prefix=f"generations/{TENANT}/", recursive=True
        ):
            key = obj.object_name or ""
            owner = key.split("/")[2] if key.count("/") >= 3 else ""
            if owner not in ids or key.endswith(".manifest.json"):
                continue
            found.add(key)
            if key not in expected:
                strays += 1
                checked.problems.append(f"stray object {key}")
        missing = set(expected) - found
        checked.problems += [f"delivered object missing: {key}" for key in sorted(missing)]
        bad_hash = 0
        for key, output in expected.items():
            if key in missing:
                continue
            digest = hashlib.sha256()
            response = self.store.get_object(self.servers.s3.bucket, key)
            try:
                for chunk in response.stream(1 << 20):
                    digest.update(chunk)
            finally:
                response.close()
                response.release_conn()
            if digest.hexdigest() != output.sha256:
                bad_hash += 1
                checked.problems.append(f"{key}: sha256 differs from the recorded one")
            try:
                self.store.stat_object(self.servers.s3.bucket, manifest_key(key))
            except Exception:
                checked.problems.append(f"{key}: no manifest")
        uploads = self.store._list_multipart_uploads(self.servers.s3.bucket, prefix=f"generations/{TENANT}/")
        unfinished = [
            u
            for u in uploads.uploads
            if (u.object_name or "").split("/")[2:3] and (u.object_name or "").split("/")[2] in ids
        ]
        checked.counts["objects"] = f"{len(found)} = outputs {len(expected)}"
        checked.counts["strays"] = strays
        checked.counts["sha256 ok"] = f"{len(expected) - len(missing) - bad_hash}/{len(expected)}"
        checked.counts["unfinished uploads"] = len(unfinished)

    def _check_tasks(self, generations: list[Started], views: list[GenerationView], checked: Checked) -> None:
        """Every task the simulator made for a generation is recorded on it, as an attempt or
        an orphan: nothing was billed that a ticket could not find."""
        made = recorded = orphans = 0
        for started, view in zip(generations, views, strict=True):
            known = set(view.provider_task_ids)
            orphan_ids = {o.task_id for o in view.orphans}
            for task in self.servers.sim.tasks(started.prompt_sha256):
                made += 1
                if task["id"] in known:
                    recorded += 1
                elif task["id"] in orphan_ids:
                    orphans += 1
                else:
                    checked.problems.append(f"{started.id}: provider task {task['id']} recorded nowhere")
        checked.counts["tasks"] = f"{made} made, {recorded} attempts + {orphans} orphans recorded"


def _as_expected(expect: Expect, view: GenerationView) -> bool:
    if expect is Expect.DELIVERED:
        return view.status is GenerationStatus.DELIVERED and bool(view.outputs)
    if expect is Expect.POLICY:
        return view.status is GenerationStatus.FAILED and view.failure_category is FailureCategory.POLICY
    return (
        view.status is GenerationStatus.FAILED
        and view.failure_category is FailureCategory.EXPIRED
        and "expired" in (view.failure_message or "")
        and not view.outputs
    )
