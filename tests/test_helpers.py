"""The test helpers themselves (tests/helpers/): each check can fail, and says why when it does."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from tests.helpers import assert_eventually
from tests.helpers.flow import HISTORIES
from tests.helpers.history import assert_event_subsequence, assert_one_create_per_attempt, event_labels


def recorded(kind: str) -> WorkflowHistory:
    [path] = HISTORIES.glob(f"{kind}-*.json")
    return WorkflowHistory.from_json(path.stem, path.read_text())


async def test_assert_eventually_returns_the_first_truthy_answer() -> None:
    answers = iter([None, "", "wait", "ready", "later"])

    async def probe() -> str | None:
        answer = next(answers)
        assert answer != "wait", "told to wait"  # an AssertionError also means "not yet"
        return answer

    assert await assert_eventually(probe, within=5, every=0.001) == "ready"


async def test_assert_eventually_fails_naming_what_and_the_last_answer() -> None:
    calls = 0

    async def never() -> bool:
        nonlocal calls
        calls += 1
        assert calls > 2, f"call {calls}"  # first "not yet" by assertion, then by a falsy answer
        return False

    with pytest.raises(
        AssertionError, match=r"the door opening did not hold within 0.05 s \(last answer: False\)"
    ):
        await assert_eventually(never, within=0.05, every=0.001, what="the door opening")
    assert calls > 3


async def test_assert_eventually_stops_at_once_on_any_other_error() -> None:
    calls = 0

    async def ended() -> bool:
        nonlocal calls
        calls += 1
        pytest.fail("it ended instead")

    with pytest.raises(pytest.fail.Exception, match="it ended instead"):
        await assert_eventually(ended, within=5)
    assert calls == 1


def test_one_create_per_attempt_holds_for_every_recorded_history() -> None:
    assert_one_create_per_attempt(recorded("ambiguous-create"), attempts=1)
    assert_one_create_per_attempt(recorded("transient-retry"), attempts=2)
    assert_one_create_per_attempt(recorded("draft-retry-orphan"), attempts=3)  # draft retry + final
    assert_one_create_per_attempt(recorded("inline-delivered"), attempts=1)  # the marker counts
    assert_one_create_per_attempt(recorded("inline-create-retried"), attempts=1)
    with pytest.raises(AssertionError, match="2 create_task scheduled and 0 inline for 1 attempts"):
        assert_one_create_per_attempt(recorded("transient-retry"), attempts=1)
    with pytest.raises(AssertionError, match="0 create_task scheduled and 1 inline for 2 attempts"):
        assert_one_create_per_attempt(recorded("inline-delivered"), attempts=2)


def test_one_create_per_attempt_sees_a_server_side_retry() -> None:
    """A create the server ran twice is one scheduled event whose start says attempt=2."""
    history = recorded("ambiguous-create")
    [started] = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED][:1]
    started.activity_task_started_event_attributes.attempt = 2
    assert "ActivityTaskStarted(create_task, attempt=2)" in event_labels(history)
    with pytest.raises(AssertionError, match=r"attempt=2"):
        assert_one_create_per_attempt(history, attempts=1)


def test_event_subsequence_is_ordered_and_names_what_is_missing() -> None:
    history = recorded("ambiguous-create")
    in_order = ["ActivityTaskFailed(create_task)", "WorkflowExecutionSignaled(provider_callback)"]
    assert_event_subsequence(history, in_order)
    with pytest.raises(AssertionError, match=r"'ActivityTaskFailed\(create_task\)' does not follow"):
        assert_event_subsequence(history, in_order[::-1])
