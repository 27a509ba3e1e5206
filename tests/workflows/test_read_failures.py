"""A provider read that fails for good ends the generation, not the workflow (issue 9, §7).

On real servers: the provider forgets a task (404: a purge, a restart) or refuses our key for it
(401 revoked, 403 forbidden) while the generation waits for it. The generation must end
`failed` with a category and a message, its figures kept (task ids, attempts, credits), its
search attributes final, and it must count in the report; the workflow execution itself
completes (it fails only on a bug).
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus

from devstack.testbed import Testbed
from tests.helpers import assert_eventually
from tests.helpers.flow import assert_replays, finished, first_task_id, prompt, start
from workflows import search_attributes as sa
from workflows.control import read_generations
from workflows.models import FailureCategory, GenerationStatus
from workflows.report import GenerationRow, economics


async def report_rows(stack: Testbed, tenant: str) -> list[GenerationRow]:
    """The tenant's rows in the report, once visibility has indexed the closed run."""

    async def closed() -> list[GenerationRow]:
        return (await read_generations(stack.client, tenant=tenant)).rows

    rows: list[GenerationRow] = await assert_eventually(closed, every=0.1)
    return rows


@pytest.mark.parametrize(
    ("status", "said"),
    [(404, "task not found"), (401, "invalid API key"), (403, "may not access the task")],
)
async def test_a_task_read_refused_for_good_fails_the_generation_not_the_workflow(
    stack: Testbed, status: int, said: str
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    text = prompt("A task the provider loses", "#gen=100000")
    started = await start(
        stack, text, tenant=tenant, quality="480p", duration=4, tuning={"poll_initial_seconds": 1.0}
    )
    task_id = await first_task_id(stack, started.view.id)
    if status == 404:
        await stack.sim.aforget_task(task_id)
    else:
        await stack.sim.arefuse_task(task_id, status)

    view = await finished(stack, started.view.id)  # a result: the execution did not fail

    assert view.status is GenerationStatus.FAILED
    assert view.failure_category is FailureCategory.INTERNAL
    assert view.failure_message and said in view.failure_message and str(status) in view.failure_message
    assert view.provider_task_ids == [task_id] and view.attempts == 1
    assert view.credits == 17  # reserved for 4 s of 480p with audio, as last read
    description = await stack.client.get_workflow_handle(started.view.id).describe()
    assert description.status is WorkflowExecutionStatus.COMPLETED
    attrs = description.typed_search_attributes
    assert attrs.get(sa.STATUS) == GenerationStatus.FAILED.value
    assert attrs.get(sa.FAILURE_CATEGORY) == FailureCategory.INTERNAL.value
    assert attrs.get(sa.ATTEMPTS) == 1 and attrs.get(sa.CREDITS) == 17
    assert attrs.get(sa.PROVIDER_TASK_IDS) == [task_id]
    assert attrs.get(sa.LATENCY_MS) is not None
    [row] = await report_rows(stack, tenant)
    assert row.status == "failed" and row.failure_category == "internal" and row.credits == 17
    overall = economics([row])[-1]
    assert overall.scenario == "ALL" and overall.generations == 1 and overall.delivered == 0
    await assert_replays(stack, started.view.id, f"read-refused-{status}")


async def test_an_execution_ended_outside_the_normal_path_still_counts_in_the_report(stack: Testbed) -> None:
    """Terminated by an operator (or failed by a bug): its own attributes stopped at `queued`,
    and the report used to drop it from every figure."""
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    started = await start(
        stack.with_task_queue(f"nobody-{uuid.uuid4().hex[:8]}"), prompt("Never run"), tenant=tenant
    )
    await stack.client.get_workflow_handle(started.view.id).terminate("operator: stuck")
    [row] = await report_rows(stack, tenant)
    assert row.status == "failed" and row.failure_category == "internal"
    assert economics([row])[-1].generations == 1
