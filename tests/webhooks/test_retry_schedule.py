"""The retry schedule on the time-skipping test server: a receiver down for two minutes gets the
event when it is back (every attempt under the same webhook-id, each verified), and a receiver
that never comes back is given up after the whole schedule (8 attempts over ~27.5 h), without
the test waiting for either."""

from __future__ import annotations

import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from devstack.testbed import Testbed
from tests.helpers import assert_eventually
from tests.helpers.receiver import receiving
from webhooks.endpoints import EndpointDirectory
from worker import product_worker
from workflows.models import GenerationStatus, GenerationView
from workflows.webhook_delivery import WebhookDeliveryWorkflow
from workflows.webhook_models import (
    NOTIFY_URL_ENDPOINT,
    RETRY_SCHEDULE,
    DeliveryInput,
    DeliveryRecord,
    EventType,
    PlannedTarget,
    TargetState,
    delivery_workflow_id,
    webhook_id,
)

BIN = Path(sys.executable).parent


async def test_a_receiver_down_two_minutes_gets_the_event_and_a_dead_one_is_given_up(
    stack: Testbed, skipping: WorkflowEnvironment
) -> None:
    settings = stack.settings.model_copy(update={"task_queue": f"hooks-skip-{uuid.uuid4().hex[:8]}"})
    secret = EndpointDirectory(settings).notify_secret("hooks")
    generation_id = f"gen-hooks-{uuid.uuid4().hex}"
    event = EventType.DELIVERED
    view = GenerationView(
        id=generation_id, tenant="hooks", user_id="u", status=GenerationStatus.DELIVERED, progress=100
    )
    with (
        receiving(secret) as flaky,
        receiving(secret) as dead,
        ThreadPoolExecutor(max_workers=4) as executor,
    ):
        flaky.status = dead.status = 503  # down
        async with (
            stack.provider() as provider,
            product_worker(skipping.client, settings, provider, executor=executor),
        ):
            handle = await skipping.client.start_workflow(
                WebhookDeliveryWorkflow.run,
                DeliveryInput(
                    generation_id=generation_id,
                    tenant="hooks",
                    event=event,
                    webhook_id=webhook_id(generation_id, event),
                    view=view,
                    targets=[
                        PlannedTarget(endpoint_id=NOTIFY_URL_ENDPOINT, events=[event], url=flaky.url),
                        PlannedTarget(endpoint_id="dead", events=[event], url=dead.url),
                    ],
                ),
                id=delivery_workflow_id(generation_id, event),
                task_queue=settings.task_queue,
            )

            async def record() -> DeliveryRecord:
                return await handle.query(WebhookDeliveryWorkflow.deliveries)

            async def attempts(n: int) -> bool:
                return all(len(t.attempts) >= n for t in (await record()).targets)

            await assert_eventually(lambda: attempts(1), within=30, what="the immediate attempts")
            await skipping.sleep(timedelta(minutes=2))  # down all along: the 5 s retry fails too
            await assert_eventually(lambda: attempts(2), within=30, what="the 5 s retries")
            assert len(flaky.received()) == 2
            flaky.status = 200  # back up; the next attempt is 5 min after the second
            await skipping.sleep(timedelta(minutes=4))

            async def recovered() -> bool:
                return (await record()).targets[0].state is TargetState.DELIVERED

            await assert_eventually(recovered, within=30, what="the delivery after the receiver came back")
            got = flaky.received()
            assert [d.status for d in got] == [503, 503, 200]
            assert all(d.verified for d in got)
            assert {d.webhook_id for d in got} == {webhook_id(generation_id, event)}  # one logical event
            assert flaky.accepted_events() == [event.value]

            await skipping.sleep(sum(RETRY_SCHEDULE, timedelta()))

            async def given_up() -> bool:
                return (await record()).targets[1].state is TargetState.GAVE_UP

            await assert_eventually(given_up, within=30, what="the give-up after the whole schedule")
            final = await record()
            assert len(final.targets[1].attempts) == len(RETRY_SCHEDULE) == len(dead.received())
            gaps = [
                round((b.at - a.at).total_seconds() / 60)
                for a, b in zip(final.targets[1].attempts, final.targets[1].attempts[1:], strict=False)
            ]
            assert gaps[2:] == [round(d.total_seconds() / 60) for d in RETRY_SCHEDULE[3:]]
            assert len(final.targets[0].attempts) == 3
