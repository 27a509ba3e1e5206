"""The generation makes each event's immediate attempt itself (a local activity in its last
workflow task): an event its receiver accepted costs no delivery workflow (tests/webhooks/
test_webhooks.py), and one it did not is handed to a delivery workflow that carries that attempt
and goes on from the schedule's 5 s step, under the same webhook-id."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from temporalio.api.enums.v1 import EventType as EventType_
from temporalio.testing import WorkflowEnvironment

from devstack.testbed import Testbed
from tests.helpers import assert_eventually
from tests.helpers.flow import assert_replays, finished, prompt
from tests.helpers.receiver import receiving
from worker import product_worker
from workflows.models import GenerationStatus
from workflows.webhook_delivery import WebhookDeliveryWorkflow
from workflows.webhook_models import (
    FIRST_ATTEMPT_ACTIVITY_TIMEOUT,
    FIRST_ATTEMPT_TIMEOUT,
    NOTIFY_URL_ENDPOINT,
    RETRY_SCHEDULE,
    AttemptOutcome,
    DeliveryInput,
    DeliveryRecord,
    EventType,
    TargetState,
    delivery_workflow_id,
    webhook_id,
)

from .test_webhooks import child_starts, deliveries, post

ACTIVITY_OR_MARKER = {EventType_.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, EventType_.EVENT_TYPE_MARKER_RECORDED}


async def test_a_failed_first_attempt_goes_on_in_a_delivery_workflow_from_the_5_s_step(
    stack: Testbed, hooks: httpx.AsyncClient, admin: httpx.AsyncClient, skipping: WorkflowEnvironment
) -> None:
    secret = (await admin.get("/hooks/webhook-endpoints")).json()["notify_url_secret"]
    event = EventType.DELIVERED
    with receiving(secret) as receiver:
        receiver.status = 503  # down
        created = await post(hooks, prompt=prompt("A ferry whose receiver is down"), notify_url=receiver.url)
        assert created.status_code == 202, created.text
        generation_id = created.json()["id"]
        assert (await finished(stack, generation_id)).status is GenerationStatus.DELIVERED
        sent = receiver.received()[0]
        assert (sent.verified, sent.status) == (True, 503)
        assert sent.webhook_id == webhook_id(generation_id, event)

        # The generation's own attempt failed: one delivery workflow, listed with that attempt.
        assert await child_starts(stack, generation_id) == 1
        [target] = (await deliveries(hooks, generation_id))[event.value]
        assert target["endpoint_id"] == NOTIFY_URL_ENDPOINT and target["state"] == TargetState.PENDING.value
        assert (target["attempts"][0]["attempt"], target["attempts"][0]["status_code"]) == (1, 503)

        # It starts with the 5 s timer: no attempt of its own before it (none immediate).
        child = stack.client.get_workflow_handle(delivery_workflow_id(generation_id, event))
        history = (await child.fetch_history()).events
        timer = next(i for i, e in enumerate(history) if e.event_type == EventType_.EVENT_TYPE_TIMER_STARTED)
        assert not [e for e in history[:timer] if e.event_type in ACTIVITY_OR_MARKER]
        waited = history[timer].timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        assert waited == RETRY_SCHEDULE[1] == timedelta(seconds=5)
        [handed] = await stack.client.data_converter.decode(
            history[0].workflow_execution_started_event_attributes.input.payloads, [DeliveryInput]
        )
        await child.terminate("the test runs its input on the time-skipping server")
        await assert_replays(stack, generation_id, "webhooks-retried")

        # That input on the time-skipping server: 5 s on, attempt 2 under the same webhook-id.
        assert isinstance(handed, DeliveryInput) and handed.first is not None
        receiver.status = 200  # back up
        settings = stack.settings.model_copy(update={"task_queue": f"hooks-first-{uuid.uuid4().hex[:8]}"})
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with (
                stack.provider() as provider,
                product_worker(skipping.client, settings, provider, executor=executor),
            ):
                handle = await skipping.client.start_workflow(
                    WebhookDeliveryWorkflow.run,
                    handed,
                    id=delivery_workflow_id(generation_id, event),
                    task_queue=settings.task_queue,
                )

                async def record() -> DeliveryRecord:
                    return await handle.query(WebhookDeliveryWorkflow.deliveries)

                assert [len(t.attempts) for t in (await record()).targets] == [1]
                await skipping.sleep(timedelta(seconds=5))

                async def delivered() -> bool:
                    return (await record()).targets[0].state is TargetState.DELIVERED

                await assert_eventually(delivered, within=30, what="the 5 s retry")
                attempts = (await record()).targets[0].attempts
        assert [(a.attempt, a.outcome) for a in attempts][-1] == (len(attempts), AttemptOutcome.DELIVERED)
        assert attempts[0] == handed.first.targets[0].attempts[0]
        got = receiver.received()
        assert (got[0].status, got[-1].status) == (503, 200) and all(d.verified for d in got)
        assert {d.webhook_id for d in got} == {webhook_id(generation_id, event)}  # one logical event
        assert receiver.accepted_events() == [event.value]


@pytest.mark.slow
async def test_a_receiver_that_does_not_answer_holds_the_generation_at_most_the_first_attempts_bound(
    stack: Testbed, hooks: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    secret = (await admin.get("/hooks/webhook-endpoints")).json()["notify_url_secret"]
    event = EventType.DELIVERED
    with receiving(secret) as receiver:
        receiver.delay = 3 * FIRST_ATTEMPT_TIMEOUT.total_seconds()  # hung, as far as the attempt knows
        created = await post(hooks, prompt=prompt("A ferry whose receiver hangs"), notify_url=receiver.url)
        generation_id = created.json()["id"]
        assert (await finished(stack, generation_id)).status is GenerationStatus.DELIVERED
        # The workflow task that made the attempt (its marker's) was held open that long, no longer.
        history = (await stack.client.get_workflow_handle(generation_id).fetch_history()).events
        marker = [e for e in history if e.event_type == EventType_.EVENT_TYPE_MARKER_RECORDED][-1]
        completed = history[marker.marker_recorded_event_attributes.workflow_task_completed_event_id - 1]
        started = history[completed.workflow_task_completed_event_attributes.started_event_id - 1]
        held = completed.event_time.ToDatetime() - started.event_time.ToDatetime()
        assert FIRST_ATTEMPT_TIMEOUT <= held <= FIRST_ATTEMPT_ACTIVITY_TIMEOUT + timedelta(seconds=1)
        [target] = (await deliveries(hooks, generation_id))[event.value]
        attempt = target["attempts"][0]
        assert (attempt["outcome"], target["state"]) == (
            AttemptOutcome.FAILED.value,
            TargetState.PENDING.value,
        )
        assert attempt["error"] == f"no complete answer within {FIRST_ATTEMPT_TIMEOUT.total_seconds():g} s"
        child = stack.client.get_workflow_handle(delivery_workflow_id(generation_id, event))
        await child.terminate("the receiver never answers")
