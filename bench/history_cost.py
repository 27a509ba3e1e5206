"""What one generation costs Temporal, counted from its real event history: events, and billable
actions as Temporal Cloud defines them (https://docs.temporal.io/cloud/actions):

- workflow started: 1 (a de-duplicated start, which records no event, costs none);
- timer started: 1 each, the implicit timer of a `wait_condition(timeout=...)` included;
- search-attribute upsert: 1 per command, however many attributes it sets, except one that sets
  only `TemporalChangeVersion` (versioning is exempt); attributes given at start are free;
- signal: 1 each; update: 1 each accepted (a rejected one leaves no event, see below);
- activity started or retried: 1 per attempt (the started event carries the attempt number,
  so the attempts a retried activity's history no longer shows are counted too);
- local activities: all markers recorded by one workflow task count as 1 (Cloud bills the
  RecordMarker commands of a workflow task as one action; a patch marker is one too);
- child workflow: 2 (start and execution); workflow options updated: 1.

Not in a history, so not counted here: queries (the API's GET of a running generation is one),
rejected updates, activity heartbeats that reach the server. Workflow tasks themselves are free.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

# Versioning's own search attribute: an upsert of it alone is not billed.
CHANGE_VERSION = "TemporalChangeVersion"

_ONE_EACH = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "workflow started",
    EventType.EVENT_TYPE_TIMER_STARTED: "timer started",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED: "options updated",
}


@dataclass
class HistoryCost:
    events: int = 0
    actions: int = 0
    # Events and actions by kind, for the figures: `events_by_type` by the event type's short
    # name (ACTIVITY_TASK_STARTED), `actions_by_kind` by the Cloud action's name.
    events_by_type: Counter[str] = field(default_factory=Counter)
    actions_by_kind: Counter[str] = field(default_factory=Counter)

    def add_action(self, kind: str, count: int = 1) -> None:
        self.actions += count
        self.actions_by_kind[kind] += count


def history_cost(events: Iterable[HistoryEvent]) -> HistoryCost:
    """Events and billable actions of one history (`WorkflowHistory.events`)."""
    cost = HistoryCost()
    marker_tasks: set[int] = set()  # workflow tasks that recorded at least one marker
    for event in events:
        kind = event.event_type
        cost.events += 1
        cost.events_by_type[EventType.Name(kind).removeprefix("EVENT_TYPE_")] += 1
        if kind in _ONE_EACH:
            cost.add_action(_ONE_EACH[kind])
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            cost.add_action(
                "activity started or retried", max(1, event.activity_task_started_event_attributes.attempt)
            )
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if set(fields) - {CHANGE_VERSION}:
                cost.add_action("search-attribute upsert")
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            task = event.marker_recorded_event_attributes.workflow_task_completed_event_id
            if task not in marker_tasks:
                marker_tasks.add(task)
                cost.add_action("markers of a workflow task")
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            cost.add_action("child workflow", 2)
    return cost


def summary(cost: HistoryCost) -> str:
    """One line: `26 events (WORKFLOW_TASK_COMPLETED 4, ...), 8 actions (timer started 1, ...)`."""
    events = ", ".join(f"{name} {n}" for name, n in cost.events_by_type.most_common())
    actions = ", ".join(f"{name} {n}" for name, n in cost.actions_by_kind.most_common())
    return f"{cost.events} events ({events}); {cost.actions} actions ({actions})"


# Issue 15's budget for one generation on the callback happy path (`make bench` prints both).
EVENTS_GOAL = 20
ACTIONS_GOAL = 10


def cost_figures(costs: list[HistoryCost]) -> dict[str, float | int | str]:
    """Per delivered generation: mean and max events and actions, and the commonest shape."""
    if not costs:
        return {}
    shapes = Counter(summary(c) for c in costs)
    return {
        "history_events_per_delivered": sum(c.events for c in costs) / len(costs),
        "history_events_max": max(c.events for c in costs),
        "billable_actions_per_delivered": sum(c.actions for c in costs) / len(costs),
        "billable_actions_max": max(c.actions for c in costs),
        # A workflow task that waited past the sticky queue's schedule-to-start timeout (a busy
        # worker): two more events, and the task goes to the normal queue.
        "workflow_tasks_timed_out_per_delivered": sum(
            c.events_by_type["WORKFLOW_TASK_TIMED_OUT"] for c in costs
        )
        / len(costs),
        "commonest_history": f"{shapes.most_common(1)[0][1]}/{len(costs)}: {shapes.most_common(1)[0][0]}",
    }
