"""What a generation costs Temporal: events and billable actions counted from real histories
(bench/history_cost.py), and the callback happy path's cost (issue 15)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from activities.provider import ProviderActivities
from bench.history_cost import ACTIONS_GOAL, EVENTS_GOAL, history_cost, summary
from devstack.testbed import Testbed
from gptimage2 import ProviderTask, Quality, VideoParams
from tests.helpers.api import stand_in_worker
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.flow import HISTORIES, assert_replays, finished, prompt, replayer, start
from workflows import policies
from workflows.control import start_generation
from workflows.generation import VideoGenerationWorkflow
from workflows.models import CreateTaskInput, GenerationSpec, GenerationStatus, ProviderCallback


def recorded(kind: str) -> WorkflowHistory:
    [path] = HISTORIES.glob(f"{kind}-??????.json")
    return WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))


def test_counts_the_events_and_actions_of_a_delivered_generation() -> None:
    cost = history_cost(recorded("delivered").events)
    assert cost.events == 26
    assert cost.events_by_type["WORKFLOW_TASK_COMPLETED"] == 4
    # Started, create and re-host, the poll timer, the callback, one workflow task's marker,
    # two upserts; the workflow tasks themselves are free.
    assert dict(cost.actions_by_kind) == {
        "workflow started": 1,
        "activity started or retried": 2,
        "timer started": 1,
        "signal": 1,
        "markers of a workflow task": 1,
        "search-attribute upsert": 2,
    }
    assert cost.actions == 8


def test_markers_of_one_workflow_task_are_one_action_and_versioning_upserts_are_free() -> None:
    # A read refused for good: the read's marker and the patch's marker in one workflow task,
    # and the TemporalChangeVersion upsert the patch adds.
    cost = history_cost(recorded("read-refused-404").events)
    assert cost.events_by_type["MARKER_RECORDED"] == 2
    assert cost.actions_by_kind["markers of a workflow task"] == 1
    assert cost.events_by_type["UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"] == 3
    assert cost.actions_by_kind["search-attribute upsert"] == 2


def test_a_retried_activity_counts_every_attempt() -> None:
    history = recorded("delivered")
    [started] = [e for e in history.events if e.HasField("activity_task_started_event_attributes")][:1]
    started.activity_task_started_event_attributes.attempt = 3
    assert history_cost(history.events).actions_by_kind["activity started or retried"] == 4


@pytest.mark.parametrize(
    ("estimate", "expected"),
    [(None, 2.0), (0, 2.0), (1.0, 2.0), (7.5, 7.5), (600, 60.0)],
)
def test_the_first_poll_waits_for_the_provider_estimate_within_the_bounds(
    estimate: float | None, expected: float
) -> None:
    assert policies.first_poll_seconds(estimate, 2.0, 60.0) == expected


async def test_a_callback_before_the_provider_estimate_costs_no_poll(stack: Testbed) -> None:
    """The issue's 34-event happy path was a poll before the callback (5 workflow tasks, 2
    timers, 2 reads): the first poll now waits for the provider's estimate, so a generation
    whose callback arrives in time is read once, on the callback."""
    # 500 simulated seconds: 2.5 s here; polls from 1 s (before: the first at 0.8-1.2 s).
    started = await start(
        stack,
        prompt("History cost", "#gen=500"),
        quality="480p",
        duration=4,
        tuning={"poll_initial_seconds": 1.0, "poll_max_seconds": 20.0},
    )
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED, view.failure_message
    assert view.polls == 0 and view.callbacks_received == 1
    history = await stack.client.get_workflow_handle(started.view.id).fetch_history()
    cost = history_cost(history.events)
    assert cost.events_by_type["TIMER_FIRED"] == 0, summary(cost)
    # The create inline in the first workflow task (a marker, no activity, no task of its own),
    # the read on the callback (a marker), the re-host, and one upsert at the end.
    assert cost.events_by_type["MARKER_RECORDED"] == 2 and cost.events_by_type["ACTIVITY_TASK_SCHEDULED"] == 1
    assert cost.events_by_type["WORKFLOW_TASK_COMPLETED"] == 3
    assert cost.events_by_type["UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"] == 1
    assert cost.events <= EVENTS_GOAL and cost.actions <= ACTIONS_GOAL, summary(cost)
    await assert_replays(stack, started.view.id, "callback-before-estimate")


class CallsBackDuringCreate(FakeProvider):
    """The provider's callback reaches the workflow before the create's answer does (a quick
    task under load): the create returns only once the signal is in the history, so both land in
    the same workflow task."""

    def __init__(self, client: Client) -> None:
        super().__init__(prefix="task-early")
        self.client = client

    @activity.defn(name=ProviderActivities.create_task.__name__)
    async def create_task(self, request: CreateTaskInput) -> ProviderTask:
        task = await super().create_task(request)
        self.complete(task.id)
        handle = self.client.get_workflow_handle(request.workflow_id)
        await handle.signal(
            VideoGenerationWorkflow.provider_callback, ProviderCallback(task_id=task.id, status="completed")
        )
        async for event in handle.fetch_history_events(wait_new_event=True):
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                break
        return task


async def test_a_callback_before_the_create_answer_starts_no_poll_timer(
    temporal_env: WorkflowEnvironment,
) -> None:
    """A callback already waiting when an activity's create answers (image-to-video here; a
    retry and the final after approval are activities too, while a run's first text-to-video
    create is inline in its first workflow task, which no signal joins): the workflow re-reads at once, with
    no poll timer in its history (the timer the wait would start is cancelled in the same
    activation, so it never reaches the server), and the task is its own, not an orphan. The
    early hint still costs two events: as an unknown task's it goes through the orphan patch
    (marker and version upsert) before the create's answer claims it; removing that changes
    the commands of runs in flight, and a patch to guard it would cost the same two events."""
    client = temporal_env.client
    async with stand_in_worker(client, CallsBackDuringCreate(client), "early-callback") as task_queue:
        started = await start_generation(
            client,
            tenant="demo",
            idempotency_key=uuid.uuid4().hex,
            spec=GenerationSpec(
                user_id="user-1",
                params=VideoParams(
                    prompt="early callback",
                    quality=Quality.P480,
                    duration=4,
                    image_urls=["https://images.example/first-frame.png"],
                ),
            ),
            task_queue=task_queue,
        )
        handle = client.get_workflow_handle_for(VideoGenerationWorkflow.run, started.view.id)
        view = await asyncio.wait_for(handle.result(), 30)
        history = await handle.fetch_history()
    if os.environ.get("RECORD_HISTORIES"):  # as tests.helpers.flow.assert_replays records
        (HISTORIES / f"callback-during-create-{uuid.uuid4().hex[:6]}.json").write_text(history.to_json())
    assert view.status is GenerationStatus.DELIVERED and view.orphans == [] and view.polls == 0
    cost = history_cost(history.events)
    assert (
        cost.events_by_type["TIMER_STARTED"] == 0 and cost.events_by_type["WORKFLOW_EXECUTION_SIGNALED"] == 1
    )
    replay = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert replay.replay_failure is None, replay.replay_failure
