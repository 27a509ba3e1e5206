"""A create whose outcome is unknown: judged by evidence, waited on for as long as the provider
says a task takes, shown to the user with its deadline, and resolvable by ops by hand.

Real stack: the simulator's `#proxy-502` answers the first create of a prompt with a bare 502 (a
proxy's page, no envelope) and makes no task; `#lost-response` makes the task and drops the answer.
Each generation's window is shortened with the `ambiguous_create_window_seconds` tuning knob.
"""

from __future__ import annotations

import httpx
import pytest

from devstack.testbed import Testbed
from gptimage2 import PROFILES, Quality, VideoParams
from gptimage2.profiles import SEEDANCE
from simulator.state import mean_generation_seconds
from tests.helpers import assert_eventually
from tests.helpers.flow import assert_replays, finished, prompt, sim_tasks_for, start
from tests.helpers.history import assert_event_subsequence, assert_one_create_per_attempt
from tests.test_exits import STARTER, base_env, run
from workflows.control import ResolutionRefused, describe_generation, resolve_create
from workflows.models import CreateResolution, FailureCategory, GenerationStatus, GenerationView
from workflows.policies import (
    AMBIGUOUS_CREATE_TAIL,
    AMBIGUOUS_CREATE_WINDOW,
    CALLBACK_DELIVERY_SPAN,
    ambiguous_create_window,
)


def test_the_window_is_what_the_provider_states_a_task_takes_plus_callback_delivery() -> None:
    draft = VideoParams(prompt="p", duration=4, quality=Quality.P480, generate_audio=False)
    # The contract's example: about 165 s for 8 s of 720p with audio.
    final = VideoParams(prompt="p", duration=8, quality=Quality.P720, generate_audio=True)
    assert round(SEEDANCE.estimated_generation_seconds(final)) == 166
    for params in (draft, final):
        stated = SEEDANCE.estimated_generation_seconds(params)
        window = ambiguous_create_window(params)
        assert window.total_seconds() == pytest.approx(
            stated * AMBIGUOUS_CREATE_TAIL + CALLBACK_DELIVERY_SPAN.total_seconds()
        )
    # A short draft waits minutes, not the fixed quarter hour it used to.
    assert ambiguous_create_window(draft).total_seconds() < 4 * 60
    assert ambiguous_create_window(final) < AMBIGUOUS_CREATE_WINDOW
    assert ambiguous_create_window(final, 7.5).total_seconds() == 7.5


def test_every_model_waits_less_than_the_old_fixed_window_and_longer_than_the_simulator_can_take() -> None:
    for profile in PROFILES.values():
        # The slowest settings it takes (constructed: only the timing fields matter here).
        longest = VideoParams.model_construct(
            prompt="p",
            model=profile.id,
            duration=profile.durations[-1],
            quality=Quality.P720,
            generate_audio=profile.audio.value != "none",
            n=None,
        )
        window = ambiguous_create_window(longest).total_seconds()
        assert window <= AMBIGUOUS_CREATE_WINDOW.total_seconds()
        # The simulator's slowest draw is 2.5 times its mean (simulator/state.py): still inside.
        assert window > 2.5 * mean_generation_seconds(longest), profile.id  # type: ignore[arg-type]


async def unresolved(stack: Testbed, workflow_id: str) -> GenerationView:
    async def waiting() -> GenerationView | None:
        view = await describe_generation(stack.client, workflow_id)
        assert not view.is_terminal, view.failure_message
        return view if view.unresolved_create else None

    return await assert_eventually(waiting, within=20, what=f"{workflow_id} waiting on an unknown create")


async def test_a_bare_502_with_no_task_waits_its_window_then_fails_without_a_second_create(
    stack: Testbed,
) -> None:
    text = prompt("A proxy dropped it", "#proxy-502")
    started = await start(
        stack, text, quality="480p", duration=4, tuning={"ambiguous_create_window_seconds": 1}
    )
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.FAILED and view.failure_category is FailureCategory.INTERNAL
    assert "no task called back by" in (view.failure_message or ""), view.failure_message
    assert "502" in (view.failure_message or "")
    assert view.attempts == 1 and sim_tasks_for(stack, text) == []  # never created a second time
    history = await stack.client.get_workflow_handle(started.view.id).fetch_history()
    assert_one_create_per_attempt(history, attempts=1)
    with pytest.raises(ResolutionRefused, match="no unresolved create"):
        await resolve_create(stack.client, started.view.id, CreateResolution())


async def test_ops_resolve_no_task_creates_again_and_it_is_recorded(stack: Testbed) -> None:
    text = prompt("Nothing was made", "#proxy-502")
    started = await start(
        stack, text, quality="480p", duration=4, tuning={"ambiguous_create_window_seconds": 120}
    )
    view = await unresolved(stack, started.view.id)
    pending = view.unresolved_create
    assert pending is not None and "502" in pending.reason
    assert view.status is GenerationStatus.QUEUED and "create outcome unknown" in view.stage
    assert 119 <= (pending.deadline - pending.since).total_seconds() <= 121  # the deadline the user sees
    assert sim_tasks_for(stack, text) == []
    # The user sees the same through the API: the state and its deadline.
    async with httpx.AsyncClient(verify=stack.tls.ssl_context()) as http:
        shown = await http.get(
            f"{stack.api_url}/v1/generations/{started.view.id}",
            headers={"Authorization": "Bearer demo-secret"},
        )
    assert shown.status_code == 200, shown.text
    assert shown.json()["unresolved_create"]["deadline"] == pending.deadline.isoformat().replace(
        "+00:00", "Z"
    )

    # Ops, from the terminal: a malformed task id is refused naming the field, and changes nothing.
    env = {**base_env(), **stack.worker_env()}
    code, _, err = await run([*STARTER, "resolve", started.view.id, "--task", "../tasks"], env)
    assert code == 2 and "task_id" in err, err
    view = await describe_generation(stack.client, started.view.id)
    assert view.unresolved_create is not None and view.resolutions == []
    code, out, err = await run(
        [*STARTER, "resolve", started.view.id, "--no-task", "--note", "dashboard shows none"], env
    )
    assert code == 0, err
    assert "resolved by ops" in out and "creating again" in out
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED, view.failure_message
    assert view.attempts == 2 and len(sim_tasks_for(stack, text)) == 1
    assert view.unresolved_create is None
    assert [(r.task_id, r.note) for r in view.resolutions] == [(None, "dashboard shows none")]
    history = await stack.client.get_workflow_handle(started.view.id).fetch_history()
    assert_one_create_per_attempt(history, attempts=2)
    await assert_replays(stack, started.view.id, "resolved-create")
    assert_event_subsequence(
        history,
        [
            "MarkerRecorded(create_task)",  # the inline create, failed as ambiguous
            "WorkflowExecutionUpdateAccepted",
            "ActivityTaskScheduled(create_task)",
            "WorkflowExecutionUpdateCompleted",
            "WorkflowExecutionCompleted",
        ],
    )


async def test_ops_adopt_the_task_whose_callback_never_came_and_a_bad_id_changes_nothing(
    stack: Testbed,
) -> None:
    text = prompt("Made but silent", "#lost-response", "#nocallback")
    started = await start(
        stack, text, quality="480p", duration=4, tuning={"ambiguous_create_window_seconds": 120}
    )
    await unresolved(stack, started.view.id)
    [made] = sim_tasks_for(stack, text)  # made before the create's answer was lost

    with pytest.raises(ResolutionRefused, match="cannot be read"):
        await resolve_create(
            stack.client, started.view.id, CreateResolution(task_id="task-unified-1-00000000")
        )
    view = await describe_generation(stack.client, started.view.id)
    assert view.unresolved_create is not None and view.resolutions == [] and view.provider_task_ids == []

    await resolve_create(stack.client, started.view.id, CreateResolution(task_id=made["id"]))
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED, view.failure_message
    assert view.provider_task_ids == [made["id"]] and view.attempts == 1
    assert len(sim_tasks_for(stack, text)) == 1  # billed once
    assert [r.task_id for r in view.resolutions] == [made["id"]]
