"""Client-side operations on generations, shared by the API and `starter.py`.

Never imported by workflow code (it talks to the Temporal service). Idempotency lives here:
the workflow id is the key, `USE_EXISTING` returns the running generation for a repeat, and
`REJECT_DUPLICATE` makes a repeat after the run closed answer from that run instead of
starting a second one.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from . import search_attributes as sa
from .generation import VideoGenerationWorkflow
from .ids import generation_workflow_id, tenant_of
from .metrics import NO_TENANT
from .models import (
    ApprovalDecision,
    CreateResolution,
    FailureCategory,
    GenerationInput,
    GenerationSpec,
    GenerationStatus,
    GenerationView,
    RetryBudget,
)
from .presets import draft_params
from .report import GenerationRow, Shape
from .webhook_plan import WebhookPlan

MEMO_REQUEST_HASH = "request_hash"


class GenerationNotFound(Exception):
    """No such generation for this tenant (unknown id, or another tenant's)."""


class IdempotencyConflict(Exception):
    """The key was used before with a different request body."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"Idempotency-Key already used for generation {workflow_id} with a different request; "
            "use a new key for a new request"
        )
        self.workflow_id = workflow_id


class NotAwaitingApproval(Exception):
    """approve/reject on a generation that is not waiting for a decision."""


class ResolutionRefused(Exception):
    """`resolve` on a generation with no unresolved create, or naming a task that cannot be read."""


@dataclass(frozen=True)
class StartResult:
    view: GenerationView
    created: bool


async def start_generation(
    client: Client,
    *,
    tenant: str,
    idempotency_key: str,
    spec: GenerationSpec,
    task_queue: str,
    budget: RetryBudget | None = None,
    tuning: dict[str, Any] | None = None,
    budgeted: bool = False,
    webhooks: WebhookPlan | None = None,
    metrics_tenant_label: bool = True,
) -> StartResult:
    """Start the generation for this intent, or find it. `tuning` overrides GenerationInput's
    timing fields (poll intervals, job TTL, heartbeat timeout) for ops and tests."""
    workflow_id = generation_workflow_id(tenant, spec.user_id, idempotency_key)
    request_hash = spec.request_hash()
    now = datetime.now(UTC)
    workflow_input = GenerationInput(
        tenant=tenant,
        idempotency_key=idempotency_key,
        spec=spec,
        request_hash=request_hash,
        budget=budget or RetryBudget(),
        submitted_at=now,
        draft_params=draft_params(spec) if spec.draft_first else None,
        budgeted=budgeted or None,
        webhooks=webhooks,
        metrics_tenant=None if metrics_tenant_label else NO_TENANT,
        **(tuning or {}),
    )
    created = False
    try:
        handle = await client.start_workflow(
            VideoGenerationWorkflow.run,
            workflow_input,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={MEMO_REQUEST_HASH: request_hash},
            search_attributes=initial_search_attributes(tenant, spec),
            static_summary=f"{spec.mode.value} · {spec.params.model} · {spec.params.duration}s {spec.params.quality or ''}",
        )
        # With USE_EXISTING the server says whether this call started the run (`started`); the
        # SDK keeps that response only privately. Without it, assume a repeat: the memo check
        # below then still refuses a different body (safe), at the cost of two extra calls.
        response = getattr(handle, "_start_workflow_response", None)
        created = bool(getattr(response, "started", False))
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)
    if not created:
        description = await handle.describe()
        memo = await description.memo()
        if memo.get(MEMO_REQUEST_HASH) != request_hash:
            raise IdempotencyConflict(workflow_id)
        return StartResult(view=await describe_generation(client, workflow_id, tenant=tenant), created=False)
    # Just started: its state is known without a query (which would cost a workflow task).
    return StartResult(view=workflow_input.initial_view(workflow_id, now=now), created=True)


def initial_search_attributes(tenant: str, spec: GenerationSpec) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.TENANT, tenant),
            SearchAttributePair(sa.USER_ID, spec.user_id),
            SearchAttributePair(sa.STATUS, GenerationStatus.QUEUED.value),
            SearchAttributePair(sa.SCENARIO, spec.scenario.value),
            SearchAttributePair(sa.MODEL, spec.params.model),
            SearchAttributePair(sa.PROMPT_HASH, spec.prompt_hash()),
            SearchAttributePair(sa.DURATION, spec.params.duration),
            *([SearchAttributePair(sa.QUALITY, spec.params.quality.value)] if spec.params.quality else []),
        ]
    )


def _handle(
    client: Client, workflow_id: str, tenant: str | None
) -> WorkflowHandle[VideoGenerationWorkflow, GenerationView]:
    if tenant is not None and tenant_of(workflow_id) != tenant:
        raise GenerationNotFound(workflow_id)
    return client.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)


async def describe_generation(
    client: Client, workflow_id: str, *, tenant: str | None = None
) -> GenerationView:
    """The live view while the run is open (a query), its result after it closed."""
    handle = _handle(client, workflow_id, tenant)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise GenerationNotFound(workflow_id) from exc
        raise
    if description.status == WorkflowExecutionStatus.RUNNING:
        try:
            return await handle.query(VideoGenerationWorkflow.view)
        except RPCError as exc:
            # A query needs a live worker; with none polling (all down, or a deploy in
            # progress) answer from what visibility indexed rather than failing the caller.
            if exc.status in (
                RPCStatusCode.NOT_FOUND,
                RPCStatusCode.FAILED_PRECONDITION,
                RPCStatusCode.DEADLINE_EXCEEDED,
            ):
                return _indexed_view(workflow_id, description)
            raise
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result()
    # Terminated, timed out or failed by an operator or a bug: report it, never hide it.
    status, category = ended_outside_normal_path(description.status)
    return GenerationView(
        id=workflow_id,
        tenant=tenant_of(workflow_id) or "",
        user_id="",
        status=status,
        stage=(description.status.name.lower() if description.status else "unknown"),
        failure_category=category,
        failure_message=f"workflow {description.status.name.lower() if description.status else 'closed'} outside the normal path",
        created_at=description.start_time,
        updated_at=description.close_time,
    )


def ended_outside_normal_path(
    status: WorkflowExecutionStatus | None,
) -> tuple[GenerationStatus, FailureCategory | None]:
    """What a closed execution that did not complete (terminated, timed out, failed by a bug,
    cancelled by an operator) means for its generation: it never says so itself."""
    if status == WorkflowExecutionStatus.CANCELED:
        return GenerationStatus.CANCELLED, None
    return GenerationStatus.FAILED, FailureCategory.INTERNAL


def _indexed_view(workflow_id: str, description: WorkflowExecutionDescription) -> GenerationView:
    attrs = description.typed_search_attributes
    task_id = attrs.get(sa.PROVIDER_TASK_ID)  # runs started before VideoProviderTaskIds have only this
    return GenerationView(
        id=workflow_id,
        tenant=attrs.get(sa.TENANT) or tenant_of(workflow_id) or "",
        user_id=attrs.get(sa.USER_ID) or "",
        status=GenerationStatus(attrs.get(sa.STATUS) or GenerationStatus.QUEUED.value),
        stage="no worker is answering right now; showing the last indexed state",
        attempts=attrs.get(sa.ATTEMPTS) or 0,
        # The indexed list names unadopted orphans too: close enough for a stopgap view.
        provider_task_ids=list(attrs.get(sa.PROVIDER_TASK_IDS) or ([task_id] if task_id else [])),
        created_at=description.start_time,
        updated_at=description.start_time,
    )


async def cancel_generation(
    client: Client, workflow_id: str, *, tenant: str | None = None, wait_seconds: float = 5.0
) -> GenerationView:
    """Requests cancellation and waits (briefly) for the generation to settle. A generation in
    the middle of a long re-host settles when that copy ends; then the view returned still
    shows it running, with the cancellation recorded in the workflow."""
    handle = _handle(client, workflow_id, tenant)
    view = await describe_generation(client, workflow_id, tenant=tenant)
    if view.is_terminal:
        return view
    try:
        update = await handle.start_update(
            VideoGenerationWorkflow.request_cancel, wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        return await asyncio.wait_for(update.result(), wait_seconds)
    except TimeoutError:
        return await describe_generation(client, workflow_id, tenant=tenant)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # closed between describe and update
            return await describe_generation(client, workflow_id, tenant=tenant)
        raise


async def decide_approval(
    client: Client, workflow_id: str, *, approved: bool, tenant: str | None = None, note: str | None = None
) -> GenerationView:
    handle = _handle(client, workflow_id, tenant)
    view = await describe_generation(client, workflow_id, tenant=tenant)
    if view.status != GenerationStatus.AWAITING_APPROVAL:
        raise NotAwaitingApproval(f"generation {workflow_id} is {view.status.value}, not awaiting approval")
    try:
        return await handle.execute_update(
            VideoGenerationWorkflow.decide, ApprovalDecision(approved=approved, note=note)
        )
    except WorkflowUpdateFailedError as exc:
        raise NotAwaitingApproval(str(exc.cause or exc)) from exc


async def resolve_create(
    client: Client, workflow_id: str, resolution: CreateResolution, *, tenant: str | None = None
) -> GenerationView:
    """Ops resolve a create whose outcome is unknown, after checking the provider's dashboard
    (`CreateResolution`); the update is recorded in the generation's history."""
    handle = _handle(client, workflow_id, tenant)
    view = await describe_generation(client, workflow_id, tenant=tenant)
    if view.unresolved_create is None:
        raise ResolutionRefused(
            f"generation {workflow_id} is {view.status.value} ({view.stage}), with no unresolved create"
        )
    try:
        return await handle.execute_update(VideoGenerationWorkflow.resolve_create, resolution)
    except WorkflowUpdateFailedError as exc:
        raise ResolutionRefused(str(exc.cause or exc)) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # ended between describe and update
            raise ResolutionRefused(f"generation {workflow_id} has ended") from exc
        raise


@dataclass(frozen=True)
class GenerationPage:
    ids: list[str]
    statuses: dict[str, str]
    next_page_token: str | None


async def list_generations(
    client: Client,
    *,
    tenant: str,
    status: GenerationStatus | None = None,
    user_id: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
) -> GenerationPage:
    """The tenant's generations from Temporal visibility, newest first, paginated."""
    clauses = [f"{sa.TENANT.name} = {_quote(tenant)}", "WorkflowType = 'VideoGenerationWorkflow'"]
    if status is not None:
        clauses.append(f"{sa.STATUS.name} = {_quote(status.value)}")
    if user_id is not None:
        clauses.append(f"{sa.USER_ID.name} = {_quote(user_id)}")
    token = base64.urlsafe_b64decode(page_token) if page_token else None
    iterator = client.list_workflows(" AND ".join(clauses), page_size=page_size, next_page_token=token)
    await iterator.fetch_next_page()
    ids: list[str] = []
    statuses: dict[str, str] = {}
    for execution in iterator.current_page or []:
        ids.append(execution.id)
        value = execution.typed_search_attributes.get(sa.STATUS)
        statuses[execution.id] = value or ""
    next_token = iterator.next_page_token
    return GenerationPage(
        ids=ids,
        statuses=statuses,
        next_page_token=base64.urlsafe_b64encode(next_token).decode() if next_token else None,
    )


def _quote(value: str) -> str:
    # Visibility queries are SQL-like; escape quotes so a user id cannot change the query.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class GenerationRows:
    rows: list[GenerationRow]
    # More matched than `limit`: the figures cover only the newest `limit` (say so, never
    # stop silently).
    truncated: bool
    limit: int


async def read_generations(
    client: Client,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    running: bool = False,
    extra: str = "",
    limit: int = 10_000,
) -> GenerationRows:
    """Generations' search attributes from visibility, newest first: closed since `since` (by
    close time), or with `running`, those still running. A closed one whose execution did not
    complete (terminated, failed by a bug) counts as failed (internal) or cancelled: its own
    attributes stopped at the status it had then. `extra` is a further visibility clause."""
    clauses = ["WorkflowType = 'VideoGenerationWorkflow'"]
    clauses.append("ExecutionStatus = 'Running'" if running else "ExecutionStatus != 'Running'")
    if tenant:
        clauses.append(f"{sa.TENANT.name} = {_quote(tenant)}")
    if since is not None:
        column = "StartTime" if running else "CloseTime"
        clauses.append(f"{column} >= {_quote(since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ'))}")
    if extra:
        clauses.append(extra)
    rows: list[GenerationRow] = []
    async for execution in client.list_workflows(" AND ".join(clauses), limit=limit + 1):
        if len(rows) == limit:
            return GenerationRows(rows=rows, truncated=True, limit=limit)
        rows.append(_row(execution))
    return GenerationRows(rows=rows, truncated=False, limit=limit)


def _row(execution: WorkflowExecution) -> GenerationRow:
    attrs = execution.typed_search_attributes
    status, category = attrs.get(sa.STATUS) or "", attrs.get(sa.FAILURE_CATEGORY)
    if execution.status not in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.RUNNING):
        ended, why = ended_outside_normal_path(execution.status)
        status, category = ended.value, why.value if why else None
    return GenerationRow(
        id=execution.id,
        scenario=attrs.get(sa.SCENARIO) or "general",
        model=attrs.get(sa.MODEL) or "",
        status=status,
        failure_category=category,
        draft_rejected=bool(attrs.get(sa.DRAFT_REJECTED)),
        attempts=attrs.get(sa.ATTEMPTS) or 0,
        credits=attrs.get(sa.CREDITS) or 0.0,
        latency_ms=attrs.get(sa.LATENCY_MS),
        duration=attrs.get(sa.DURATION),
        quality=attrs.get(sa.QUALITY),
        started_at=execution.start_time,
        final_started_at=attrs.get(sa.FINAL_STARTED),
        closed_at=execution.close_time,
    )


async def recent_deliveries(client: Client, shape: Shape, *, since: datetime, limit: int) -> GenerationRows:
    """Generations of this model, duration and quality delivered since `since`."""
    model, duration, quality = shape
    clauses = [
        f"{sa.STATUS.name} = {_quote(GenerationStatus.DELIVERED.value)}",
        f"{sa.MODEL.name} = {_quote(model)}",
    ]
    if duration is not None:
        clauses.append(f"{sa.DURATION.name} = {int(duration)}")
    if quality is not None:
        clauses.append(f"{sa.QUALITY.name} = {_quote(quality)}")
    return await read_generations(client, since=since, extra=" AND ".join(clauses), limit=limit)
