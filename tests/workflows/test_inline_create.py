"""The run's first create runs inline, as a local activity in its first workflow task (issue 15:
five events fewer on every run), and stays at most once: a worker killed with the request in
flight leaves a retried first task, which creates nothing more and adopts the task that calls
back. Revisions: workflows/revision.py."""

from __future__ import annotations

import signal
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.common import WorkerDeploymentVersion

from bench.history_cost import EVENTS_GOAL, history_cost, summary
from devstack.testbed import Testbed
from gptimage2 import Quality, VideoParams
from tests.helpers import assert_eventually
from tests.helpers.flow import assert_replays, finished, prompt, sim_tasks_for, start
from tests.helpers.history import assert_event_subsequence, assert_one_create_per_attempt, event_labels
from tests.workflows.test_worker_crash import spawn_worker
from workflows import revision
from workflows.control import initial_search_attributes
from workflows.generation import VideoGenerationWorkflow
from workflows.models import GenerationInput, GenerationSpec, GenerationStatus


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (revision.deployment_version(), revision.REVISION),
        (revision.deployment_version(7), 7),
        # Written before revisions: the SDK's default build id, a hash of the loaded modules.
        (WorkerDeploymentVersion("", "5f040c2c598ed869ee19566a5e20530b"), 1),
        (WorkerDeploymentVersion("", "workflows-r3"), 3),  # a server that keeps no deployment name
        (WorkerDeploymentVersion("someone-else", "workflows-r9"), 1),
        (WorkerDeploymentVersion(revision.DEPLOYMENT_NAME, "workflows-rX"), 1),
        # Recorded by no one (the time-skipping server keeps none): the live answer was ours.
        (None, revision.REVISION),
        (WorkerDeploymentVersion("", ""), revision.REVISION),
    ],
)
def test_a_recorded_version_names_its_revision(
    version: WorkerDeploymentVersion | None, expected: int
) -> None:
    assert revision.revision_of(version) == expected


async def test_the_first_create_is_inline_and_the_happy_path_fits_the_budget(stack: Testbed) -> None:
    started = await start(stack, prompt("Inline create", "#gen=400"), quality="480p", duration=4)
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED, view.failure_message
    history = await stack.client.get_workflow_handle(started.view.id).fetch_history()
    labels = event_labels(history)
    assert labels[:5] == [
        "WorkflowExecutionStarted",
        "WorkflowTaskScheduled",
        "WorkflowTaskStarted",
        "WorkflowTaskCompleted",
        "MarkerRecorded(create_task)",
    ], labels
    assert_one_create_per_attempt(history, attempts=1)
    cost = history_cost(history.events)
    if view.polls == 0:  # the callback came before the first poll, as it does unless the machine stalls
        assert cost.events <= EVENTS_GOAL, summary(cost)
    await assert_replays(stack, started.view.id, "inline-delivered")


async def test_a_worker_killed_during_the_inline_create_creates_nothing_more(
    stack: Testbed, tmp_path: Path
) -> None:
    """SIGKILL while the provider holds the create's answer (the task exists): the first
    workflow task times out, its retry on another worker refuses to create (the first request
    may have arrived: it did), and the task's callback is adopted. One provider task."""
    task_queue = f"inline-{uuid.uuid4().hex[:8]}"
    crash_stack = stack.with_task_queue(task_queue)
    first = spawn_worker(crash_stack, task_queue, tmp_path / "worker-1.log")
    second = None
    try:
        # The answer waits 30 s; the task ends 3 s (600 simulated s) after it was made.
        text = prompt("Killed mid-create", "#slow-answer=30", "#gen=600")
        spec = GenerationSpec(
            user_id="user-1", params=VideoParams(prompt=text, quality=Quality.P480, duration=4)
        )
        workflow_id = f"gen-inline-{uuid.uuid4().hex}"
        await stack.client.start_workflow(
            VideoGenerationWorkflow.run,
            GenerationInput(
                tenant="demo", idempotency_key=workflow_id, spec=spec, request_hash=spec.request_hash()
            ),
            id=workflow_id,
            task_queue=task_queue,
            search_attributes=initial_search_attributes("demo", spec),
            # The retry of the first task comes this soon after the kill (the default: 10 s).
            task_timeout=timedelta(seconds=2),
        )

        async def created() -> bool:
            if first.poll() is not None:
                pytest.fail((tmp_path / "worker-1.log").read_text()[-2000:])
            return bool(sim_tasks_for(stack, text))

        await assert_eventually(created, within=30, every=0.05, what="the task at the provider")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = spawn_worker(crash_stack, task_queue, tmp_path / "worker-2.log")
        view = await finished(crash_stack, workflow_id, within=60)
        assert view.status is GenerationStatus.DELIVERED, view.failure_message
        [task] = sim_tasks_for(stack, text)  # never billed twice
        assert view.provider_task_ids == [task["id"]] and view.attempts == 1
        history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
        assert_one_create_per_attempt(history, attempts=1)
        assert_event_subsequence(
            history,
            [
                "WorkflowTaskTimedOut",
                "MarkerRecorded(create_task)",  # refused, unsent: the first request may have arrived
                "WorkflowExecutionSignaled(provider_callback)",
                "MarkerRecorded(get_task)",
                "WorkflowExecutionCompleted",
            ],
        )
        await assert_replays(stack, workflow_id, "inline-create-retried")
    finally:
        for process in (first, second):
            if process and process.poll() is None:
                process.kill()  # nothing left to finish: the generation ended
                process.wait(10)
