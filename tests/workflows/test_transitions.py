"""The generation's state machine: `workflows/models.py::TRANSITIONS`.

Every status change the workflow makes goes through `check_transition` (in `_set_status`), so
every flow the other tests run (and every recorded history tests/workflows/test_replay.py replays) is a
check that the code makes no change the table lacks. Here: the table's own shape, that the
workflow really consults it (a change removed from the table breaks the replay of real
histories), that a violation fails the workflow task and not the generation, and that the
README draws the table as it is.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.provider import ProviderActivities
from gptimage2 import ProviderTask, Quality, Usage, VideoParams
from tests.helpers.api import stand_in_worker
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.flow import HISTORIES, replayer
from workflows.control import start_generation
from workflows.generation import VideoGenerationWorkflow
from workflows.models import (
    TERMINAL,
    TRANSITIONS,
    GenerationSpec,
    GenerationStatus,
    InvalidTransition,
    check_transition,
    render_transitions,
)

S = GenerationStatus
README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_draws_the_table() -> None:
    drawing = render_transitions()
    assert drawing in README.read_text()
    assert "    processing --> queued" in drawing.splitlines()
    assert "    rehosting --> cancelled" not in drawing.splitlines()


def test_every_status_has_a_row_and_terminal_ones_lead_nowhere() -> None:
    assert set(TRANSITIONS) == set(GenerationStatus)
    assert all(not TRANSITIONS[status] for status in TERMINAL)
    # From the start, every status is reachable, and from every status an ending is.
    reached, frontier = {S.QUEUED}, [S.QUEUED]
    while frontier:
        for new in TRANSITIONS[frontier.pop()] - reached:
            reached.add(new)
            frontier.append(new)
    assert reached == set(GenerationStatus)
    for status in set(GenerationStatus) - TERMINAL:
        assert TRANSITIONS[status] & TERMINAL, status


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.PROCESSING, S.QUEUED),  # a new task after a transient failure; the provider says pending again
        (S.QUEUED, S.REHOSTING),  # completed before any read saw it processing
        (S.AWAITING_APPROVAL, S.QUEUED),  # approved: the final starts
        (S.REHOSTING, S.AWAITING_APPROVAL),  # the draft is delivered
        (S.PROCESSING, S.PROCESSING),  # progress: only the stage changes
    ],
)
def test_changes_the_workflow_makes_are_allowed(old: GenerationStatus, new: GenerationStatus) -> None:
    check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.DELIVERED, S.QUEUED),
        (S.FAILED, S.PROCESSING),
        (S.CANCELLED, S.CANCELLED),
        (S.REHOSTING, S.CANCELLED),  # a cancel waits for the re-host
        (S.QUEUED, S.DELIVERED),  # nothing is delivered without a re-host
        (S.QUEUED, S.AWAITING_APPROVAL),
    ],
)
def test_a_change_outside_the_table_raises_a_task_failure(
    old: GenerationStatus, new: GenerationStatus
) -> None:
    with pytest.raises(InvalidTransition, match=f"{old.value} -> {new.value}") as raised:
        check_transition(old, new)
    # Not an ApplicationError: Temporal fails (and retries) the workflow task, not the workflow.
    assert not isinstance(raised.value, ApplicationError)


async def test_real_histories_break_without_the_change_they_make(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_set_status` consults the table: every generation first goes queued -> queued (the
    create's stage); without it, each recorded history fails to replay."""
    monkeypatch.setitem(TRANSITIONS, S.QUEUED, TRANSITIONS[S.QUEUED] - {S.QUEUED})
    paths = sorted(HISTORIES.glob("*.json"))
    assert paths
    for path in paths:
        history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
        result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is not None, path.stem
        assert InvalidTransition.__name__ in str(result.replay_failure), path.stem


async def start_stand_in(client: Client, task_queue: str) -> str:
    started = await start_generation(
        client,
        tenant="demo",
        idempotency_key=uuid.uuid4().hex,
        spec=GenerationSpec(
            user_id="user-1", params=VideoParams(prompt="stand-in", quality=Quality.P480, duration=4)
        ),
        task_queue=task_queue,
    )
    return started.view.id


async def test_a_violation_fails_the_workflow_task_not_the_generation(
    temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(TRANSITIONS, S.QUEUED, TRANSITIONS[S.QUEUED] - {S.QUEUED})
    client = temporal_env.client
    async with stand_in_worker(client, FakeProvider(), "transitions") as task_queue:
        handle = client.get_workflow_handle(await start_stand_in(client, task_queue))
        try:
            async with asyncio.timeout(30):
                async for event in handle.fetch_history_events(wait_new_event=True):
                    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                        failure = event.workflow_task_failed_event_attributes.failure
                        break
                else:
                    pytest.fail("the history ended without a failed workflow task")
            assert failure.application_failure_info.type == InvalidTransition.__name__
            error = await client.data_converter.decode_failure(failure)  # messages are encrypted
            assert "queued -> queued is not in TRANSITIONS" in str(error)
            assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
        finally:
            await handle.terminate("test over")


class CancelsLater(FakeProvider):
    """A provider that cancels asynchronously: its cancel answers with the task still running."""

    @activity.defn(name=ProviderActivities.cancel_task.__name__)
    async def cancel_task(self, task_id: str) -> ProviderTask | None:
        return self.tasks[task_id].model_copy(update={"progress": 50, "usage": Usage(credits_reserved=7.0)})


async def test_the_cancels_answer_counts_credits_but_never_reopens_the_generation(
    temporal_env: WorkflowEnvironment,
) -> None:
    client = temporal_env.client
    provider = CancelsLater()
    async with stand_in_worker(client, provider, "cancels-later") as task_queue:
        workflow_id = await start_stand_in(client, task_queue)
        handle = client.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)
        await provider.wait_for_task(workflow_id)
        try:
            async with asyncio.timeout(30):
                await handle.execute_update(VideoGenerationWorkflow.request_cancel)
                view = await handle.result()
        finally:
            if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")
    assert view.status is S.CANCELLED and view.stage == "cancelled by request"
    assert view.credits == 7.0  # what the provider still reserves for the task
