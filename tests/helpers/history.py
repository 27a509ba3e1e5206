"""Assertions on a workflow's recorded history: what the server scheduled, not what the code meant to.

Each event gets a short label, `ActivityTaskScheduled(create_task)`,
`ActivityTaskStarted(create_task, attempt=1)`, `WorkflowExecutionSignaled(provider_callback)`, so
a failure prints the history as a readable list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

# The marker a local activity's result is recorded in (sdk-core); its `data` names the activity.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def _kind(event: HistoryEvent) -> str:
    return "".join(
        word.capitalize() for word in EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").split("_")
    )


def event_labels(history: WorkflowHistory) -> list[str]:
    """One label per event, naming the activity, timer-less signal or update it concerns."""
    activity_of: dict[int, str] = {}
    labels = []
    for event in history.events:
        kind = _kind(event)
        if event.HasField("activity_task_scheduled_event_attributes"):
            activity_of[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
            labels.append(f"{kind}({activity_of[event.event_id]})")
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            labels.append(f"{kind}({activity_of[started.scheduled_event_id]}, attempt={started.attempt})")
        elif event.HasField("activity_task_completed_event_attributes"):
            labels.append(
                f"{kind}({activity_of[event.activity_task_completed_event_attributes.scheduled_event_id]})"
            )
        elif event.HasField("activity_task_failed_event_attributes"):
            labels.append(
                f"{kind}({activity_of[event.activity_task_failed_event_attributes.scheduled_event_id]})"
            )
        elif event.HasField("activity_task_timed_out_event_attributes"):
            scheduled = event.activity_task_timed_out_event_attributes.scheduled_event_id
            labels.append(f"{kind}({activity_of[scheduled]})")
        elif event.HasField("workflow_execution_signaled_event_attributes"):
            labels.append(f"{kind}({event.workflow_execution_signaled_event_attributes.signal_name})")
        elif event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER:
            [data] = event.marker_recorded_event_attributes.details["data"].payloads
            labels.append(f"{kind}({json.loads(data.data)['activity_type']})")
        else:
            labels.append(kind)
    return labels


def assert_event_subsequence(history: WorkflowHistory, expected: Sequence[str]) -> None:
    """`expected` labels occur in the history in this order (other events may come between)."""
    labels = event_labels(history)
    position = 0
    for label in expected:
        try:
            position = labels.index(label, position) + 1
        except ValueError:
            raise AssertionError(
                f"{label!r} does not follow {expected[: expected.index(label)]} in the history:\n  "
                + "\n  ".join(labels)
            ) from None


def assert_one_create_per_attempt(history: WorkflowHistory, attempts: int) -> None:
    """The workflow created exactly once per attempt (a `create_task` activity scheduled, or the
    first run inline, a local activity's marker), and the server never ran a scheduled create a
    second time (a retry of a create that may have created a task bills twice)."""
    labels = event_labels(history)
    scheduled = labels.count("ActivityTaskScheduled(create_task)")
    inline = labels.count("MarkerRecorded(create_task)")
    started = [label for label in labels if label.startswith("ActivityTaskStarted(create_task,")]
    assert inline <= 1 and scheduled + inline == attempts, (
        f"{scheduled} create_task scheduled and {inline} inline for {attempts} attempts:\n  "
        + "\n  ".join(labels)
    )
    assert started == ["ActivityTaskStarted(create_task, attempt=1)"] * scheduled, "\n  ".join(labels)
