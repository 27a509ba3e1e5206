"""What a generation costs Temporal: events and billable actions counted from real histories
(bench/history_cost.py), and the callback happy path's cost (issue 15)."""

from __future__ import annotations

import json

import pytest
from temporalio.client import WorkflowHistory

from bench.history_cost import ACTIONS_GOAL, history_cost
from devstack.testbed import Testbed
from tests.helpers.flow import HISTORIES, assert_replays, finished, prompt, start
from workflows import policies
from workflows.models import GenerationStatus


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
    assert cost.events_by_type["TIMER_FIRED"] == 0 and cost.events_by_type["MARKER_RECORDED"] == 1
    assert cost.events_by_type["WORKFLOW_TASK_COMPLETED"] == 4
    assert cost.events <= 26 and cost.actions <= ACTIONS_GOAL
    await assert_replays(stack, started.view.id, "callback-before-estimate")
