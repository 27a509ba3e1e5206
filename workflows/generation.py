"""VideoGenerationWorkflow: one run per user intent, from provider task to delivered object.

Orchestration only: every side effect is an activity. Callbacks are hints (they only wake the
wait loop); the provider task is always re-read with `get_task` before any decision, as the
contract requires. No video bytes ever enter this history: activities return keys and hashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.exceptions import TimeoutError as TimeoutError_

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.provider import ProviderActivities
    from activities.rehost import RehostActivities
    from gptimage2 import (
        LINK_TTL_SECONDS,
        POLICY_GUIDANCE,
        FailureCategory,
        ProviderTask,
        TaskStatus,
        classify_task_error,
    )

    from . import metrics, policies, revision
    from . import search_attributes as sa
    from .budget import (
        AdjustRequest,
        ReserveRequest,
        ReserveResult,
        SettleRequest,
        estimate_credits,
        reservation_id,
    )
    from .models import (
        TERMINAL,
        ActivityErrorType,
        ApprovalDecision,
        CreateResolution,
        CreateTaskInput,
        GenerationInput,
        GenerationSpec,
        GenerationStatus,
        GenerationView,
        OrphanTask,
        OutputObject,
        ProviderCallback,
        RehostInput,
        ResolvedCreate,
        UnresolvedCreate,
        check_transition,
    )
    from .presets import draft_params
    from .progress import ProgressEvent, ProgressLog
    from .webhook_delivery import WebhookDeliveryWorkflow, first_attempts
    from .webhook_models import (
        EVENTS_OF_STATUS,
        DeliveryInput,
        DeliveryRecord,
        EventType,
        PlannedTarget,
        delivery_workflow_id,
        webhook_id,
    )

# `workflow.patched` ids: each guards a change in the commands a history holds.
PATCH_INDEX_ORPHANS = "index-orphan-task-ids"
PATCH_CANCEL_UNREADABLE = "cancel-unreadable-task"
PATCH_STATED_CREATE_WINDOW = "ambiguous-create-window-from-provider"
PATCH_BUDGET_LEDGER = "budget-ledger"  # only budgeted runs (GenerationInput.budgeted) reach it
# Budgeted runs whose task reserved other than the estimate: the ledger holds the provider's figure.
PATCH_BUDGET_ADJUST = "budget-adjust"

# How an activity's failure reaches workflow code. A normal activity's comes wrapped in
# `ActivityError` (its cause: the `ApplicationError`, a `TimeoutError`, a `CancelledError`). A
# local activity's that raised, for good or after its retries, comes as the raw
# `ApplicationError`, unwrapped; only its timeouts come wrapped (temporalio 1.35 with Server
# 1.32, checked: tests/workflows/test_activity_failures.py). Every call site catches both.
ACTIVITY_FAILURES = (ActivityError, ApplicationError)


def activity_cause(err: ActivityError | ApplicationError) -> BaseException:
    """The activity's own failure, whichever way it arrived."""
    return (err.cause or err) if isinstance(err, ActivityError) else err


class _Ended(Exception):
    """Internal: the generation reached a terminal state; the view already says which."""


@dataclass(frozen=True)
class _TaskCredits:
    """One provider task's credits as it last reported them."""

    charged: float
    reserved: float
    refunded: float


@dataclass
class _Held:
    """A reservation on the tenant's ledger: its credits, and the provider task it paid for."""

    credits: float
    task_id: str | None = None


@workflow.defn
class VideoGenerationWorkflow:
    @workflow.init
    def __init__(self, input: GenerationInput) -> None:
        self._input = input
        self._view = input.initial_view(workflow.info().workflow_id, now=workflow.now())
        self._current_task_id: str | None = None
        self._woken = False
        self._cancel_requested = False
        self._decision: ApprovalDecision | None = None
        self._task_credits: dict[str, _TaskCredits] = {}  # by provider task id
        self._task_created_at: dict[str, datetime] = {}
        self._unindexed: dict[str, SearchAttributeUpdate[Any]] = {}
        self._unclaimed: dict[str, ProviderCallback] = {}
        self._seen_callbacks: set[tuple[str, str]] = set()
        self._deadline = workflow.now() + timedelta(seconds=input.job_ttl_seconds)
        self._last_failure: str | None = None
        # A live provider task to cancel when the generation ends early (cancel, TTL).
        self._abandoned_task_id: str | None = None
        self._settled = False  # terminal and cleaned up (provider task cancelled, credits final)
        # Ops' resolution of an unresolved create, until the run loop acts on it; then its outcome.
        self._resolution: CreateResolution | None = None
        self._resolution_refused: str | None = None
        # Budgeted runs: reservations not yet settled on the ledger, by reservation id.
        self._held: dict[str, _Held] = {}
        self._current_reservation: str | None = None
        self._ambiguous_reservation: str | None = None
        self._progress = ProgressLog()  # for the live stream; memory only, rebuilt by replay
        self._progress.record(self._view, workflow.now())
        # For the metrics and LatencyMs (workflow state only: no commands).
        self._phase = metrics.Phase.DRAFT if input.spec.draft_first else metrics.Phase.FINAL
        self._approval_wait = timedelta(0)
        self._retries = 0
        self._orphans_adopted = 0
        # The generation's own webhook attempts, one record per event (`_notify_first`; each
        # event is raised once a run).
        self._first_deliveries: list[DeliveryRecord] = []

    # ---- handlers: they only record; the run loop decides --------------------------------

    @workflow.query
    def view(self) -> GenerationView:
        return self._view

    @workflow.query
    def progress_events(self, after: int) -> list[ProgressEvent]:
        return self._progress.after(after)

    @workflow.signal
    def provider_callback(self, hint: ProviderCallback) -> None:
        self._view.callbacks_received += 1
        key = (hint.task_id, hint.status)
        duplicate = key in self._seen_callbacks
        self._seen_callbacks.add(key)
        if hint.task_id == self._current_task_id:
            if not duplicate:
                self._woken = True
        elif hint.task_id not in self._view.provider_task_ids:
            # Not a task this generation knows: an orphan (e.g. created by a create whose
            # response was lost). Recorded, adopted only while a create is unresolved.
            self._unclaimed[hint.task_id] = hint
            self._record_orphan(hint)
            self._woken = True

    @workflow.update
    async def request_cancel(self) -> GenerationView:
        self._cancel_requested = True
        await workflow.wait_condition(lambda: self._settled)
        return self._view

    @workflow.update
    async def decide(self, decision: ApprovalDecision) -> GenerationView:
        self._decision = decision
        await workflow.wait_condition(lambda: self._view.status != GenerationStatus.AWAITING_APPROVAL)
        return self._view

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        if self._view.status != GenerationStatus.AWAITING_APPROVAL or self._decision is not None:
            raise ApplicationError(f"generation is {self._view.status.value}, not awaiting approval")

    @workflow.update
    async def resolve_create(self, resolution: CreateResolution) -> GenerationView:
        """Ops resolve an unresolved create by hand (`starter.py resolve`): recorded in history
        (the update) and in the view (`resolutions`). Refused (the update fails, nothing
        changes) when the task named cannot be read."""
        self._resolution, self._resolution_refused = resolution, None
        await workflow.wait_condition(lambda: self._resolution is None or self._settled)
        if self._resolution_refused:
            raise ApplicationError(self._resolution_refused, type="ResolutionRefused", non_retryable=True)
        return self._view

    @resolve_create.validator
    def _validate_resolve_create(self, resolution: CreateResolution) -> None:
        if self._view.unresolved_create is None or self._resolution is not None:
            raise ApplicationError(
                f"generation is {self._view.status.value} ({self._view.stage}), with no unresolved create"
            )
        if resolution.task_id is not None and resolution.task_id in self._view.provider_task_ids:
            raise ApplicationError(f"task {resolution.task_id} is already one of this generation's")

    # ---- the run ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: GenerationInput) -> GenerationView:
        try:
            if input.spec.draft_first:
                await self._draft_then_approve(input.spec)
            self._view.outputs = await self._generate(input.spec, "final")
            self._set_status(GenerationStatus.DELIVERED, "delivered", progress=100)
        except _Ended:
            if self._abandoned_task_id:
                await self._cancel_provider_task(self._abandoned_task_id)
        await self._settle_held()
        self._finish()
        await self._notify()
        self._settled = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view

    async def _draft_then_approve(self, spec: GenerationSpec) -> None:
        """Draft -> approve -> final, the guide's main spend reducer (docs/provider-contract.md): a cheap draft
        (the scenario preset's draft row, workflows.presets), then a durable wait (days) for the
        user's decision. The final uses the approved request. Only activity inputs depend on
        the draft's parameters (no command changes): replay-safe without a patch."""
        params = self._input.draft_params or draft_params(spec)
        draft_spec = spec.model_copy(update={"params": params, "draft_first": False})
        draft_outputs = await self._generate(draft_spec, "draft")
        # The generation as it stood when its draft was delivered (deep: the final goes on).
        self._view.draft = self._view.model_copy(
            deep=True,
            update={
                "id": f"{self._view.id}/draft",
                "status": GenerationStatus.DELIVERED,
                "stage": "delivered",
                "progress": 100,
                "outputs": draft_outputs,
                "params": params,
                "model": params.model,
            },
        )
        metrics.record_latency(
            workflow.metric_meter(),
            self._metric_kind(model=params.model),
            metrics.Phase.DRAFT,
            GenerationStatus.DELIVERED.value,
            self._elapsed().total_seconds(),
        )
        self._set_status(GenerationStatus.AWAITING_APPROVAL, "awaiting approval of the draft")
        self._phase = metrics.Phase.APPROVAL
        awaiting_since = workflow.now()
        await self._notify()
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None or self._cancel_requested,
                timeout=timedelta(seconds=self._input.approval_ttl_seconds),
            )
        except TimeoutError:
            self._fail(FailureCategory.TIMEOUT, "the draft was neither approved nor rejected in time")
        finally:
            self._approval_wait += workflow.now() - awaiting_since
        if self._cancel_requested:
            self._end_cancelled("cancelled while awaiting approval")
        assert self._decision is not None
        if not self._decision.approved:
            self._set_status(GenerationStatus.CANCELLED, "draft rejected")
            self._view.failure_message = self._decision.note or "the draft was rejected"
            raise _Ended
        # The final's own job TTL starts at approval: the wait for a human is not generation time.
        self._deadline = workflow.now() + timedelta(seconds=self._input.job_ttl_seconds)
        self._view.final_started_at = workflow.now()
        # Joins the upsert of the final's first status change (no command of its own: replay
        # compares the command, not its attributes), so visibility knows when the TTL restarted.
        self._index([sa.FINAL_STARTED.value_set(workflow.now())], defer=True)
        self._phase = metrics.Phase.FINAL

    async def _generate(self, spec: GenerationSpec, phase: str) -> list[OutputObject]:
        """Provider tasks until one completes (new tasks only for transient failures, within
        the budget), then re-host its results."""
        deadline = self._deadline
        budget = self._input.budget
        attempts_in_phase = 0
        while True:
            self._check_cancel_and_deadline(deadline)
            if attempts_in_phase >= budget.max_attempts:
                self._fail(FailureCategory.TRANSIENT, self._last_failure or "retry budget spent")
            if budget.max_credits is not None and self._view.credits >= budget.max_credits:
                self._fail(FailureCategory.TRANSIENT, "credit budget spent")
            attempts_in_phase += 1
            await self._reserve(spec)
            task = await self._create(spec, attempts_in_phase, deadline)
            if self._current_reservation in self._held:
                self._held[self._current_reservation].task_id = task.id
                await self._hold_providers_figure(self._current_reservation, task)
            task = await self._wait_for_end(task, deadline)
            await self._settle_task(task, delivered=phase == "final")
            status = task.known_status
            if status is TaskStatus.COMPLETED:
                return await self._rehost(task, spec, phase)
            if status is TaskStatus.CANCELLED:
                self._end_cancelled("the provider cancelled the task")
            verdict = classify_task_error(task.error.code if task.error else None)
            message = f"{task.error.code}: {task.error.message}" if task.error else "task failed"
            if verdict.category is FailureCategory.POLICY:
                self._view.guidance = POLICY_GUIDANCE
                self._fail(FailureCategory.POLICY, message)
            if not verdict.retryable:
                self._fail(verdict.category, message)
            self._last_failure = f"transient failures used the retry budget; last: {message}"
            self._retries += 1
            workflow.logger.info("transient provider failure, new task within budget: %s", message)

    async def _create(self, spec: GenerationSpec, attempt: int, deadline: datetime) -> ProviderTask:
        self._set_status(GenerationStatus.QUEUED, f"creating provider task (attempt {attempt})")
        self._view.attempts += 1
        job = CreateTaskInput(workflow_id=self._view.id, attempt=attempt, params=spec.params)
        try:
            if self._view.attempts == 1 and revision.task_revision() >= revision.LEAN_HAPPY_PATH:
                task = await self._first_create(job)
            else:
                task = await self._create_as_activity(job)
        except ACTIVITY_FAILURES as err:
            cause = activity_cause(err)
            ambiguous = None
            if isinstance(cause, ApplicationError) and cause.type == ActivityErrorType.CREATE_AMBIGUOUS:
                ambiguous = cause.message
            elif isinstance(cause, TimeoutError_):
                ambiguous = "the create attempt timed out (worker lost?)"
            if ambiguous is None:
                self._fail_from_activity(err, "could not create the provider task")
            found = await self._reconcile_ambiguous_create(ambiguous, deadline, spec)
            # None: ops checked the provider's dashboard, found no task, and asked for a new create.
            return found if found is not None else await self._create(spec, attempt, deadline)
        self._adopt(task)
        return task

    async def _create_as_activity(self, job: CreateTaskInput) -> ProviderTask:
        return await workflow.execute_activity_method(
            ProviderActivities.create_task,
            job,
            start_to_close_timeout=policies.CREATE_TIMEOUT,
            retry_policy=policies.CREATE_RETRY,
        )

    async def _first_create(self, job: CreateTaskInput) -> ProviderTask:
        """The run's first create, always reached in its first workflow task: inline, as a local
        activity (workflows/policies.py, "create"). It is sent only from the first try of that
        task, live: a later try may follow a worker that died with the create in flight, and a
        replay that finds no result recorded may follow one that died after a heartbeat of the
        task. Then the activity refuses as CreateAmbiguous, and its refusal is what the history
        records; the commands are the same either way, so replay needs no branch here."""
        if job.params.image_urls:
            return await self._create_as_activity(job)
        # The first try: started, task scheduled, task started, and any callback signalled
        # before it (a retried task adds at least its timeout, a schedule and a start).
        first_try = workflow.info().get_current_history_length() == 3 + self._view.callbacks_received
        unsafe = workflow.unsafe.is_replaying() or not first_try
        try:
            return await workflow.execute_local_activity_method(
                ProviderActivities.create_task,
                job.model_copy(update={"inline": True, "may_have_run_before": unsafe}),
                start_to_close_timeout=policies.INLINE_CREATE_TIMEOUT,
                retry_policy=policies.CREATE_RETRY,
            )
        except ApplicationError as err:  # a local activity's own failure comes unwrapped
            if err.type != ActivityErrorType.CREATE_NOT_SENT:
                raise
        return await self._create_as_activity(job)

    async def _reconcile_ambiguous_create(
        self, message: str, deadline: datetime, spec: GenerationSpec
    ) -> ProviderTask | None:
        """The create may have created a task we never heard of. Creating again could bill
        twice, so wait for a callback from an unknown task on this generation's URL instead, for
        as long as the provider says such a task takes (patched: older runs waited a fixed 15
        minutes), or until ops resolve it by hand."""
        if workflow.patched(PATCH_STATED_CREATE_WINDOW):
            window = policies.ambiguous_create_window(
                spec.params, self._input.ambiguous_create_window_seconds
            )
        else:
            window = policies.AMBIGUOUS_CREATE_WINDOW
        now = workflow.now()
        until = min(now + window, max(now, deadline))
        self._view.unresolved_create = UnresolvedCreate(reason=message, since=now, deadline=until)
        self._ambiguous_reservation = self._current_reservation
        self._set_status(
            GenerationStatus.QUEUED,
            f"create outcome unknown; waiting until {until:%Y-%m-%d %H:%M:%S} UTC for the provider to call back",
        )
        while True:
            try:
                await workflow.wait_condition(
                    lambda: bool(self._unclaimed) or self._cancel_requested or self._resolution is not None,
                    timeout=max(timedelta(0), until - workflow.now()),
                )
            except TimeoutError:
                self._view.unresolved_create = None
                self._fail(
                    FailureCategory.INTERNAL,
                    f"{message}; no task called back by {until:%Y-%m-%d %H:%M:%S} UTC (as long as the "
                    "provider says such a task takes), so no second task was created (that could have "
                    "billed twice); submit the generation again to retry",
                )
            self._check_cancel_and_deadline(deadline)
            if self._unclaimed:
                if self._resolution is not None:  # the evidence came first: ops' guess is moot
                    self._refuse_resolution("a task called back meanwhile and was adopted")
                self._view.unresolved_create = None
                task = await self._get_task(next(iter(self._unclaimed)))
                self._adopt(task)
                self._orphans_adopted += 1
                return task
            resolved, task_or_none = await self._apply_resolution()
            if resolved:
                self._view.unresolved_create = None
                return task_or_none

    async def _apply_resolution(self) -> tuple[bool, ProviderTask | None]:
        """Ops' resolution: (True, None) create again; (True, the task they named, read and
        adopted); (False, None) when that task cannot be read (the update is refused, the wait
        goes on)."""
        resolution = self._resolution
        assert resolution is not None
        task: ProviderTask | None = None
        if resolution.task_id is None:
            said = "no task at the provider: creating again"
        else:
            try:
                task = await workflow.execute_local_activity_method(
                    ProviderActivities.get_task,
                    resolution.task_id,
                    start_to_close_timeout=policies.READ_TIMEOUT,
                    retry_policy=policies.READ_RETRY,
                    schedule_to_close_timeout=policies.READ_SCHEDULE_TO_CLOSE,
                )
            except ACTIVITY_FAILURES as err:
                self._refuse_resolution(f"task {resolution.task_id} cannot be read: {activity_cause(err)}")
                return False, None
            said = f"adopted task {resolution.task_id}"
        self._view.resolutions.append(
            ResolvedCreate(**resolution.model_dump(), at=workflow.now(), outcome=said)
        )
        workflow.logger.info("unresolved create resolved by ops: %s", said)
        self._resolution = None
        if task is not None:
            self._adopt(task)
            self._orphans_adopted += 1
        return True, task

    def _refuse_resolution(self, why: str) -> None:
        self._resolution_refused, self._resolution = why, None

    def _adopt(self, task: ProviderTask) -> None:
        self._current_task_id = task.id
        self._task_created_at.setdefault(task.id, workflow.now())
        if task.id not in self._view.provider_task_ids:
            self._view.provider_task_ids.append(task.id)
        # Its callback may have been handled before the create's result (signals come first in
        # an activation): then it is ours after all, and already worth a re-read.
        self._woken = self._unclaimed.pop(task.id, None) is not None
        self._view.orphans = [o for o in self._view.orphans if o.task_id != task.id]
        self._note_task(task)
        # Indexed with the next status change (or poll), not on its own: each upsert is a
        # visibility write on the server, the biggest per-generation cost after the events.
        self._index(
            [sa.PROVIDER_TASK_ID.value_set(task.id), sa.ATTEMPTS.value_set(self._view.attempts)], defer=True
        )
        self._index_task_ids()

    async def _wait_for_end(self, task: ProviderTask, deadline: datetime) -> ProviderTask:
        """Callback or poll timer, whichever first; either way the task is re-read."""
        estimate = task.task_info.estimated_time if task.task_info else None
        interval = policies.first_poll_seconds(
            estimate, self._input.poll_initial_seconds, self._input.poll_max_seconds
        )
        via = metrics.FinalisedVia.CREATE
        while not task.is_terminal:
            self._check_cancel_and_deadline(deadline, task_id=task.id)
            remaining = (deadline - workflow.now()).total_seconds()
            # Jitter spreads the polls of many generations started together.
            timeout = max(1.0, min(interval * (0.8 + 0.4 * workflow.random().random()), remaining))
            try:
                await workflow.wait_condition(
                    lambda: self._woken or self._cancel_requested, timeout=timedelta(seconds=timeout)
                )
            except TimeoutError:
                self._view.polls += 1
                self._index()  # a generation that polls is slow: make its task findable now
                interval = min(interval * 2, self._input.poll_max_seconds)
            via = metrics.FinalisedVia.CALLBACK if self._woken else metrics.FinalisedVia.POLL
            self._woken = False
            if self._cancel_requested:
                continue
            task = await self._get_task(task.id)
            self._note_task(task)
        metrics.record_task_finalised(workflow.metric_meter(), via)
        return task

    async def _get_task(self, task_id: str) -> ProviderTask:
        # Why a local activity, and how it is retried: workflows/policies.py, "read".
        try:
            return await workflow.execute_local_activity_method(
                ProviderActivities.get_task,
                task_id,
                start_to_close_timeout=policies.READ_TIMEOUT,
                retry_policy=policies.READ_RETRY,
                schedule_to_close_timeout=policies.READ_SCHEDULE_TO_CLOSE,
            )
        except ACTIVITY_FAILURES as err:
            # The task may still be running (a refused key, a forbidden account): cancel it, best
            # effort, so it is not charged for nothing. Patched: older runs scheduled no cancel.
            abandoned = task_id if workflow.patched(PATCH_CANCEL_UNREADABLE) else None
            self._fail_from_activity(err, "could not read the provider task", abandoned)

    def _note_task(self, task: ProviderTask) -> None:
        status = task.known_status
        reserved = float(task.usage.credits_reserved or 0) if task.usage else 0.0
        refunded = task.usage.credits_refunded if task.usage else None
        if refunded is None:  # not reported: a failed or cancelled task is not charged
            refunded = reserved if status in (TaskStatus.FAILED, TaskStatus.CANCELLED) else 0.0
        self._task_credits[task.id] = _TaskCredits(task.credits, reserved, float(refunded))
        self._view.credits = round(sum(c.charged for c in self._task_credits.values()), 4)
        if self._view.is_terminal:
            # The cancel's answer, after the generation ended: its credits count, not its status
            # (a provider that cancels asynchronously may still say processing).
            self._view.updated_at = workflow.now()
        elif status in (TaskStatus.PROCESSING, None) or (status is TaskStatus.PENDING and task.progress):
            self._set_status(
                GenerationStatus.PROCESSING,
                f"provider {task.status} {task.progress:.0f}%",
                progress=min(float(task.progress), 99.0),
            )
        elif status is TaskStatus.PENDING:
            self._set_status(GenerationStatus.QUEUED, "queued at the provider")
        else:
            self._view.updated_at = workflow.now()

    async def _rehost(self, task: ProviderTask, spec: GenerationSpec, phase: str) -> list[OutputObject]:
        self._set_status(GenerationStatus.REHOSTING, "re-hosting the result", progress=99.0)
        now = workflow.now()
        # The link lives 24 h from the provider's completion. Its clock is not ours: a task
        # cannot have completed before we created it, so a skewed timestamp is clamped to that.
        completed = datetime.fromtimestamp(task.completed_at, tz=now.tzinfo) if task.completed_at else now
        completed = max(completed, self._task_created_at.get(task.id, completed))
        expires_at = min(completed, now) + timedelta(seconds=LINK_TTL_SECONDS)
        left = expires_at - now - policies.EXPIRY_MARGIN
        if left <= timedelta(0) or not task.results:
            self._fail(
                FailureCategory.EXPIRED if task.results else FailureCategory.INTERNAL,
                "the result link expired before it could be re-hosted"
                if task.results
                else "completed with no results",
            )
        outputs: list[OutputObject] = []
        for index, url in enumerate(task.results or []):
            try:
                output = await workflow.execute_activity_method(
                    RehostActivities.rehost_result,
                    RehostInput(
                        workflow_id=self._view.id,
                        tenant=self._view.tenant,
                        user_id=spec.user_id,
                        phase=phase,
                        index=index,
                        url=url,
                        task_id=task.id,
                        prompt_hash=spec.prompt_hash(),
                        mode=spec.mode,
                        params=spec.params,
                        credits=task.credits,
                        expires_at=expires_at,
                    ),
                    # The link's expiry is the re-host's hard deadline.
                    schedule_to_close_timeout=left,
                    start_to_close_timeout=min(left, policies.REHOST_ATTEMPT_TIMEOUT),
                    heartbeat_timeout=timedelta(seconds=self._input.heartbeat_timeout_seconds),
                    retry_policy=policies.REHOST_RETRY,
                )
            except ACTIVITY_FAILURES as err:
                cause = activity_cause(err)
                if isinstance(cause, ApplicationError) and cause.type == ActivityErrorType.LINK_EXPIRED:
                    self._fail(FailureCategory.EXPIRED, cause.message)
                if workflow.now() >= expires_at - policies.EXPIRY_MARGIN:
                    self._fail(FailureCategory.EXPIRED, "the result link expired before re-hosting succeeded")
                self._fail_from_activity(err, "could not re-host the result")
            outputs.append(output)
        return outputs

    # ---- the tenant's credit budget (budgeted runs only: no events otherwise) ---------------

    async def _reserve(self, spec: GenerationSpec) -> None:
        """Reserves the next provider task's credits on the tenant's ledger before it is created;
        a refusal fails the generation `budget` with nothing created. The first task's
        reservation was made by the API before it started this run."""
        if not (self._input.budgeted and workflow.patched(PATCH_BUDGET_LEDGER)):
            return
        number = self._view.attempts + 1
        rid = reservation_id(self._view.id, number)
        credits = estimate_credits(spec.params)
        self._current_reservation = rid
        self._held[rid] = _Held(credits)
        if number == 1:
            return
        request = ReserveRequest(
            reservation_id=rid,
            generation_id=self._view.id,
            user_id=spec.user_id,
            scenario=spec.scenario.value,
            model=spec.params.model,
            credits=credits,
        )
        try:
            result: ReserveResult = await self._on_ledger(
                LedgerActivities.reserve_credits, request, policies.LEDGER_RESERVE_WINDOW
            )
        except ACTIVITY_FAILURES as err:
            # It may have landed: `_settle_held` releases it.
            self._fail_from_activity(err, "could not reserve credits on the tenant's ledger")
        if not result.granted:
            del self._held[rid]
            refusal = result.refusal
            self._fail(FailureCategory.BUDGET, refusal.message() if refusal else "credit budget exceeded")

    async def _hold_providers_figure(self, rid: str, task: ProviderTask) -> None:
        """The provider's `usage.credits_reserved`, known once the task exists, replaces the
        estimate the reservation was made with, so the ledger's spent + reserved is the
        provider's own figure (it may then exceed the limit: the task exists either way)."""
        held = self._held[rid]
        figure = task.usage.credits_reserved if task.usage else None
        if figure is None or figure == held.credits or not workflow.patched(PATCH_BUDGET_ADJUST):
            return
        held.credits = figure
        request = AdjustRequest(reservation_id=rid, credits=figure)
        try:
            await self._on_ledger(LedgerActivities.adjust_credits, request, policies.LEDGER_RESERVE_WINDOW)
        except ACTIVITY_FAILURES as err:
            # The task's settle books what it was charged either way.
            workflow.logger.error("could not adjust %s on the ledger: %s", rid, activity_cause(err))

    async def _settle_task(self, task: ProviderTask, *, delivered: bool) -> None:
        """The ended task's reservation settles to what it was charged (0 releases it)."""
        rid = self._current_reservation
        if rid is None or rid not in self._held:
            return
        completed = task.known_status is TaskStatus.COMPLETED
        await self._settle(rid, task.credits, delivered=delivered and completed)

    async def _settle_held(self) -> None:
        """At the end, whatever is still reserved settles: a task's last known credits (a task
        cancelled at the provider is refunded; one still running is charged as reserved), a
        create whose outcome stayed unknown as reserved (it may have billed), else released."""
        for rid, held in list(self._held.items()):
            if held.task_id is not None:
                known = self._task_credits.get(held.task_id)
                charged = known.charged if known else held.credits
            else:
                charged = held.credits if rid == self._ambiguous_reservation else 0.0
            await self._settle(rid, charged, delivered=False)

    async def _settle(self, rid: str, charged: float, *, delivered: bool) -> None:
        spec = self._input.spec
        request = SettleRequest(
            reservation_id=rid,
            charged=charged,
            delivered=delivered,
            user_id=spec.user_id,
            scenario=spec.scenario.value,
            model=self._view.model,
        )
        try:
            await self._on_ledger(LedgerActivities.settle_credits, request, policies.LEDGER_SETTLE_WINDOW)
        except ACTIVITY_FAILURES as err:
            # Reconciliation with the provider (GET /v1/credits) shows what never reached it.
            workflow.logger.error("could not settle %s on the ledger: %s", rid, activity_cause(err))
        self._held.pop(rid, None)

    async def _on_ledger(
        self, activity: Any, request: ReserveRequest | SettleRequest | AdjustRequest, window: timedelta
    ) -> Any:
        """One call on the tenant's ledger (workflows/policies.py, "ledger")."""
        return await workflow.execute_activity_method(
            activity,
            args=[self._view.tenant, request],
            start_to_close_timeout=policies.LEDGER_TIMEOUT,
            schedule_to_close_timeout=window,
            retry_policy=policies.LEDGER_RETRY,
        )

    # ---- endings ---------------------------------------------------------------------------

    async def _cancel_provider_task(self, task_id: str) -> None:
        """Best effort: stops a task we no longer want, so it is not charged if it can be helped."""
        try:
            task = await workflow.execute_activity_method(
                ProviderActivities.cancel_task,
                task_id,
                start_to_close_timeout=policies.CANCEL_TIMEOUT,
                retry_policy=policies.CANCEL_RETRY,
            )
        except ACTIVITY_FAILURES as err:
            workflow.logger.warning("could not cancel provider task %s: %s", task_id, activity_cause(err))
            return
        if task is not None:
            self._note_task(task)

    def _check_cancel_and_deadline(self, deadline: datetime, task_id: str | None = None) -> None:
        if self._cancel_requested:
            self._end_cancelled("cancelled by request", task_id)
        if workflow.now() >= deadline:
            self._fail(FailureCategory.TIMEOUT, "the job TTL ran out before the video was delivered", task_id)

    def _end_cancelled(self, why: str, task_id: str | None = None) -> NoReturn:
        self._abandoned_task_id = task_id
        self._set_status(GenerationStatus.CANCELLED, why)
        raise _Ended

    def _fail(self, category: FailureCategory, message: str, task_id: str | None = None) -> NoReturn:
        self._abandoned_task_id = task_id
        self._view.failure_category = category
        self._view.failure_message = message
        self._set_status(GenerationStatus.FAILED, f"failed: {category.value}")
        raise _Ended

    def _fail_from_activity(
        self, err: ActivityError | ApplicationError, what: str, task_id: str | None = None
    ) -> NoReturn:
        cause = activity_cause(err)
        category = FailureCategory.INTERNAL
        message = str(cause)
        if isinstance(cause, ApplicationError):
            message = cause.message
            if cause.details and isinstance(cause.details[0], str):
                try:
                    category = FailureCategory(cause.details[0])
                except ValueError:
                    pass
        self._fail(category, f"{what}: {message}", task_id)

    def _elapsed(self) -> timedelta:
        """Submit -> now, less the time spent awaiting approval (a human's time, not ours)."""
        return workflow.now() - (self._view.created_at or workflow.now()) - self._approval_wait

    def _metric_kind(self, model: str | None = None) -> dict[str, str]:
        return {"scenario": self._view.scenario.value, "model": model or self._view.model}

    def _finish(self) -> None:
        view = self._view
        elapsed = self._elapsed()
        latency_ms = int(elapsed.total_seconds() * 1000)
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.STATUS.value_set(view.status.value),
            sa.ATTEMPTS.value_set(view.attempts),
            sa.CREDITS.value_set(view.credits),
            sa.LATENCY_MS.value_set(latency_ms),
        ]
        if view.failure_category:
            updates.append(sa.FAILURE_CATEGORY.value_set(view.failure_category.value))
        if self._decision is not None and not self._decision.approved:
            # Within the same final upsert (replay compares the command, not its attributes).
            updates.append(sa.DRAFT_REJECTED.value_set(True))
        self._index(updates)
        metrics.record_generation_end(
            workflow.metric_meter(),
            metrics.GenerationEnd(
                tenant=self._input.metrics_tenant or view.tenant,
                **self._metric_kind(),
                status=view.status.value,
                category=view.failure_category.value if view.failure_category else "none",
                phase=self._phase,
                latency_seconds=elapsed.total_seconds(),
                provider_tasks=view.attempts,
                retries=self._retries,
                credits=metrics.Credits(
                    charged=view.credits,
                    reserved=sum(c.reserved for c in self._task_credits.values()),
                    refunded=sum(c.refunded for c in self._task_credits.values()),
                ),
                orphans_adopted=self._orphans_adopted,
                orphans_recorded=len(view.orphans),
            ),
        )

    def _set_status(self, status: GenerationStatus, stage: str, *, progress: float | None = None) -> None:
        check_transition(self._view.status, status)  # raises on a workflow bug: fails the task
        changed = status != self._view.status
        self._view.status = status
        self._view.stage = stage
        if progress is not None:
            self._view.progress = progress
        self._view.updated_at = workflow.now()
        self._progress.record(self._view, workflow.now())
        workflow.set_current_details(f"{status.value}: {stage}")
        # Terminal statuses are indexed by `_finish`, with the final figures, in one upsert;
        # from revision 2, `rehosting` joins it too (a copy takes seconds; its own upsert was an
        # event in every delivered run): the live status is the view's.
        if changed and status not in TERMINAL:
            rehosting = status is GenerationStatus.REHOSTING
            defer = rehosting and revision.task_revision() >= revision.LEAN_HAPPY_PATH
            self._index([sa.STATUS.value_set(status.value)], defer=defer)

    async def _notify(self) -> None:
        """Webhooks for the status just reached. Nothing without a plan (no endpoint, no
        notify_url): then no command, no event in this history. Otherwise the generation makes
        the immediate attempt at each target itself (`_notify_first`); runs from before that
        start a delivery workflow per event."""
        plan = self._input.webhooks
        if plan is None:
            return
        deliveries = [
            self._delivery(event, targets)
            for event in EVENTS_OF_STATUS.get(self._view.status, ())
            if (targets := plan.targets_for(event))
        ]
        if not deliveries:
            return
        if revision.task_revision() >= revision.WEBHOOK_FIRST_ATTEMPT:
            await self._notify_first(deliveries)
            return
        for delivery in deliveries:
            await self._start_delivery(delivery)

    async def _notify_first(self, deliveries: list[DeliveryInput]) -> None:
        """The immediate attempts, local activities in this workflow task: it stays open (this
        generation's close, its last upsert, a query) at most FIRST_ATTEMPT_ACTIVITY_TIMEOUT.
        An event some target did not settle (failed, no answer in time) goes on in a delivery
        workflow of its own, from the schedule's next step, abandoned to run on its own."""
        records = await first_attempts(deliveries)
        for delivery, record in zip(deliveries, records, strict=True):
            self._first_deliveries.append(record)
            if not record.settled:
                await self._start_delivery(delivery.model_copy(update={"first": record}))

    def _delivery(self, event: EventType, targets: list[PlannedTarget]) -> DeliveryInput:
        return DeliveryInput(
            generation_id=self._view.id,
            tenant=self._view.tenant,
            event=event,
            webhook_id=webhook_id(self._view.id, event),
            view=self._view.model_copy(deep=True),
            targets=targets,
        )

    async def _start_delivery(self, delivery: DeliveryInput) -> None:
        try:
            await workflow.start_child_workflow(
                WebhookDeliveryWorkflow.run,
                delivery,
                id=delivery_workflow_id(delivery.generation_id, delivery.event),
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            )
        except WorkflowAlreadyStartedError:
            pass  # this event's delivery exists already (a reset run): it is not sent twice

    @workflow.query
    def webhook_deliveries(self) -> list[DeliveryRecord]:
        """The immediate attempt at each event's targets, as this generation made it; an event
        it did not settle has a delivery workflow too, whose record starts with the same."""
        return list(self._first_deliveries)

    def _index(self, updates: Sequence[SearchAttributeUpdate[Any]] = (), *, defer: bool = False) -> None:
        for update in updates:
            self._unindexed[update.key.name] = update
        if defer or not self._unindexed:
            return
        if self._input.index_search_attributes:
            workflow.upsert_search_attributes(list(self._unindexed.values()))
        self._unindexed.clear()

    def _index_task_ids(self) -> None:
        """Every task of this generation, searchable (deferred like the task id it extends)."""
        ids = [*self._view.provider_task_ids, *(o.task_id for o in self._view.orphans)]
        self._index([sa.PROVIDER_TASK_IDS.value_set(list(dict.fromkeys(ids)))], defer=True)

    def _record_orphan(self, hint: ProviderCallback) -> None:
        if all(o.task_id != hint.task_id for o in self._view.orphans):
            self._view.orphans.append(
                OrphanTask(task_id=hint.task_id, status=hint.status, credits=hint.credits)
            )
            # Not adopted (yet), but it called back on this generation's own URL: this
            # generation created it, and it may be billed, so a ticket quoting it must find us.
            # Patched: a pending update makes the next poll upsert, a command older runs lack.
            if workflow.patched(PATCH_INDEX_ORPHANS):
                self._index_task_ids()
        else:
            for orphan in self._view.orphans:
                if orphan.task_id == hint.task_id:
                    orphan.status, orphan.credits = hint.status, hint.credits


__all__ = ["VideoGenerationWorkflow"]
