"""Durable webhook delivery, and the durable state of a tenant's endpoints.

`WebhookDeliveryWorkflow`: one per (generation, event), started by the generation as a child
with ParentClosePolicy.ABANDON, so the generation's result never waits on a receiver and a
delivery goes on for hours after its generation closed. Each target is attempted on
RETRY_SCHEDULE; every attempt is one activity run (no Temporal retries: the schedule is the
retry policy, and each attempt is recorded and queryable).

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
        FINAL_OUTCOMES,
        STATE_OF_FINAL_OUTCOME,
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


@workflow.defn
class WebhookDeliveryWorkflow:
    @workflow.init
    def __init__(self, input: DeliveryInput) -> None:
        self._record = DeliveryRecord(
            event=input.event,
            webhook_id=input.webhook_id,
            targets=[TargetDeliveries(endpoint_id=t.endpoint_id) for t in input.targets],
        )

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
        for number, wait in enumerate(input.schedule_seconds, start=1):
            if wait > 0:
                record.next_attempt_at = workflow.now() + timedelta(seconds=wait)
                await workflow.sleep(wait)
            record.next_attempt_at = None
            started = workflow.now()
            # When the attempt started, on the workflow's clock (the schedule's own).
            result = (await self._attempt(input, target, number)).model_copy(update={"at": started})
            record.attempts.append(result)
            if result.outcome in FINAL_OUTCOMES:
                record.state = STATE_OF_FINAL_OUTCOME[result.outcome]
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

    async def _attempt(self, input: DeliveryInput, target: PlannedTarget, number: int) -> AttemptResult:
        job = AttemptInput(
            tenant=input.tenant,
            generation_id=input.generation_id,
            event=input.event,
            webhook_id=input.webhook_id,
            target=target,
            attempt=number,
            view=input.view,
        )
        try:
            # The immediate attempt runs as a local activity, inside this run's first workflow
            # task: a delivery that succeeds at once costs one task and one marker, no activity
            # task (the common case, and most of webhooks' cost per generation). The retries,
            # seconds to hours later, are normal activities.
            if number == 1:
                result: AttemptResult = await workflow.execute_local_activity(
                    DELIVER_ACTIVITY,
                    job,
                    result_type=AttemptResult,
                    start_to_close_timeout=ATTEMPT_ACTIVITY_TIMEOUT,
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
            return result
        # The worker died, the activity timed out or crashed (a local activity's own failure
        # comes unwrapped: workflows.generation.ACTIVITY_FAILURES).
        except (ActivityError, ApplicationError) as err:
            cause = (err.cause or err) if isinstance(err, ActivityError) else err
            return AttemptResult(
                attempt=number, outcome=AttemptOutcome.FAILED, at=workflow.now(), error=str(cause)
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
