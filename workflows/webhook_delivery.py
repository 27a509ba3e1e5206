"""Durable webhook delivery, and the durable state of a tenant's endpoints.

`first_attempts`: the immediate attempt at each target, made by the generation itself (local
activities in its workflow task, bounded by FIRST_ATTEMPT_TIMEOUT): an event every target
answered costs the generation one marker, and no workflow of its own.

`WebhookDeliveryWorkflow`: one per (generation, event) that the immediate attempt did not
settle, started by the generation as a child with ParentClosePolicy.ABANDON, so the
generation's result never waits on a retry and a delivery goes on for hours after its
generation closed. It carries the generation's attempt and goes on with RETRY_SCHEDULE from its
next step (or, started by a generation from before `first_attempts`, from the start); every
attempt is one activity run (no Temporal retries: the schedule is the retry policy, and each
attempt is recorded and queryable).

`WebhookEndpointsWorkflow`: one per tenant, the registry of admin-made endpoints and of
disabled ones. Why a workflow and not a table: its updates are serialized (an admin re-enabling
an endpoint and a 410 disabling it cannot interleave and lose one), it is as durable as
everything else the service keeps, it needs no new database, and it holds no secret (secrets
are derived, webhooks/signing.py). It continues as new when its history grows.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from .webhook_models import (
        ATTEMPT_ACTIVITY_TIMEOUT,
        FIRST_ATTEMPT_ACTIVITY_TIMEOUT,
        FIRST_ATTEMPT_TIMEOUT,
        AttemptInput,
        AttemptOutcome,
        AttemptResult,
        DeliveryInput,
        DeliveryRecord,
        Disabled,
        EndpointRecord,
        PlannedTarget,
        RegistryState,
        Rotate,
        SetDisabled,
        TargetDeliveries,
        TargetState,
    )

DELIVER_ACTIVITY = "deliver_webhook"
# One run per attempt: the schedule between attempts is the workflow's, not Temporal's.
ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)


async def first_attempts(deliveries: list[DeliveryInput]) -> list[DeliveryRecord]:
    """The generation's own immediate attempt at every target of each delivery, all at once: one
    record per delivery, which a WebhookDeliveryWorkflow goes on from unless it is settled."""
    records = [_new_record(d) for d in deliveries]
    pairs = [
        (d, t, r)
        for d, rec in zip(deliveries, records, strict=True)
        for t, r in zip(d.targets, rec.targets, strict=True)
    ]
    results = await asyncio.gather(*(_attempt(d, t, 1, first=True) for d, t, _ in pairs))
    for (_, _, record), result in zip(pairs, results, strict=True):
        record.record(result)
    return records


def _new_record(input: DeliveryInput) -> DeliveryRecord:
    return DeliveryRecord(
        event=input.event,
        webhook_id=input.webhook_id,
        targets=[TargetDeliveries(endpoint_id=t.endpoint_id) for t in input.targets],
    )


async def _attempt(
    input: DeliveryInput, target: PlannedTarget, number: int, *, first: bool = False
) -> AttemptResult:
    """One attempt, one activity run; its failure to run is a failed attempt, never an error.
    `first`: the generation's own, bounded by FIRST_ATTEMPT_TIMEOUT."""
    job = AttemptInput(
        tenant=input.tenant,
        generation_id=input.generation_id,
        event=input.event,
        webhook_id=input.webhook_id,
        target=target,
        attempt=number,
        view=input.view,
    )
    if first:
        job.timeout_seconds = FIRST_ATTEMPT_TIMEOUT.total_seconds()
    started = workflow.now()
    try:
        # An immediate attempt runs as a local activity, inside the current workflow task: one
        # that succeeds costs a marker, no activity task. The retries, seconds to hours later,
        # are normal activities.
        if number == 1:
            result: AttemptResult = await workflow.execute_local_activity(
                DELIVER_ACTIVITY,
                job,
                result_type=AttemptResult,
                start_to_close_timeout=FIRST_ATTEMPT_ACTIVITY_TIMEOUT if first else ATTEMPT_ACTIVITY_TIMEOUT,
                retry_policy=ONE_ATTEMPT,
            )
        else:
            result = await workflow.execute_activity(
                DELIVER_ACTIVITY,
                job,
                result_type=AttemptResult,
                start_to_close_timeout=ATTEMPT_ACTIVITY_TIMEOUT,
                retry_policy=ONE_ATTEMPT,
            )
    # The worker died, the activity timed out or crashed (a local activity's own failure
    # comes unwrapped: workflows.generation.ACTIVITY_FAILURES).
    except (ActivityError, ApplicationError) as err:
        cause = (err.cause or err) if isinstance(err, ActivityError) else err
        result = AttemptResult(attempt=number, outcome=AttemptOutcome.FAILED, at=started, error=str(cause))
    # When the attempt started, on the workflow's clock (the schedule's own).
    return result.model_copy(update={"at": started})


@workflow.defn
class WebhookDeliveryWorkflow:
    @workflow.init
    def __init__(self, input: DeliveryInput) -> None:
        self._record = input.first.model_copy(deep=True) if input.first else _new_record(input)

    @workflow.query
    def deliveries(self) -> DeliveryRecord:
        return self._record

    @workflow.run
    async def run(self, input: DeliveryInput) -> DeliveryRecord:
        await asyncio.gather(
            *(
                self._deliver(input, target, record)
                for target, record in zip(input.targets, self._record.targets, strict=True)
            )
        )
        return self._record

    async def _deliver(self, input: DeliveryInput, target: PlannedTarget, record: TargetDeliveries) -> None:
        if record.state is not TargetState.PENDING:
            return  # settled by the generation's own attempt
        for number, wait in enumerate(input.schedule_seconds, start=1):
            if number <= len(record.attempts):
                continue  # made before this workflow started (the generation's immediate one)
            if wait > 0:
                record.next_attempt_at = workflow.now() + timedelta(seconds=wait)
                await workflow.sleep(wait)
            record.next_attempt_at = None
            if record.record(await _attempt(input, target, number)):
                return
        record.state = TargetState.GAVE_UP
        workflow.metric_meter().create_counter(
            "webhook_give_ups", "webhook deliveries abandoned after the whole retry schedule"
        ).add(1, {"event": input.event.value})
        workflow.logger.warning(
            "webhook %s for %s to endpoint %s: gave up after %d attempts",
            input.event.value,
            input.generation_id,
            target.endpoint_id,
            len(record.attempts),
        )


@workflow.defn
class WebhookEndpointsWorkflow:
    @workflow.init
    def __init__(self, state: RegistryState) -> None:
        self._state = state

    @workflow.run
    async def run(self, state: RegistryState) -> None:
        await workflow.wait_condition(
            lambda: workflow.info().is_continue_as_new_suggested() and workflow.all_handlers_finished()
        )
        workflow.continue_as_new(self._state)

    @workflow.query
    def state(self) -> RegistryState:
        return self._state

    @workflow.update
    def put(self, record: EndpointRecord) -> EndpointRecord:
        """Creates an endpoint or changes its URL and events (its secrets stay)."""
        old = self._state.endpoints.get(record.id)
        if old is not None:
            record = old.model_copy(update={"url": record.url, "events": record.events})
        else:
            record = record.model_copy(update={"created_at": workflow.now()})
        self._state.endpoints[record.id] = record
        return record

    @workflow.update
    def rotate(self, rotate: Rotate) -> EndpointRecord:
        """A new secret; the one before stays active for `grace_seconds` (two active secrets)."""
        record = self._endpoint(rotate.endpoint_id)
        record.previous_version = record.version
        record.previous_until = workflow.now() + timedelta(seconds=rotate.grace_seconds)
        record.version += 1
        return record

    @workflow.update
    def remove(self, endpoint_id: str) -> None:
        self._endpoint(endpoint_id)
        del self._state.endpoints[endpoint_id]
        self._state.disabled.pop(endpoint_id, None)

    @workflow.update
    def set_disabled(self, change: SetDisabled) -> RegistryState:
        """Disables (a 410, an admin) or re-enables any endpoint of the tenant, configured or
        admin-made, by id."""
        if change.disabled:
            self._state.disabled.setdefault(
                change.endpoint_id, Disabled(reason=change.reason, at=workflow.now())
            )
        else:
            self._state.disabled.pop(change.endpoint_id, None)
        return self._state

    def _endpoint(self, endpoint_id: str) -> EndpointRecord:
        record = self._state.endpoints.get(endpoint_id)
        if record is None:
            raise ApplicationError(f"no webhook endpoint {endpoint_id!r}", type="EndpointNotFound")
        return record
