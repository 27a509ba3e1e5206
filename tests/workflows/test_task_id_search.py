"""Every provider task of a generation finds it in Temporal visibility (issue 9, §4).

A support ticket quotes one task id: the draft's, a failed attempt's, or one adopted after a
lost create response. `VideoProviderTaskIds` (a KeywordList) holds them all, so the README's
query `VideoProviderTaskIds = 'task-unified-…'` finds the generation from any of them.
"""

from __future__ import annotations

from functools import partial

from devstack.testbed import Testbed
from tests.helpers import assert_eventually
from tests.helpers.flow import (
    assert_replays,
    finished,
    prompt,
    sim_tasks_for,
    start,
    wait_for_status,
)
from workflows import search_attributes as sa
from workflows.control import decide_approval
from workflows.models import GenerationStatus


async def found_by_task(stack: Testbed, task_id: str) -> list[str]:
    query = f"{sa.PROVIDER_TASK_IDS.name} = '{task_id}'"
    return [execution.id async for execution in stack.client.list_workflows(query)]


async def test_each_task_of_a_draft_with_a_retry_and_an_adopted_orphan_finds_the_generation(
    stack: Testbed,
) -> None:
    # The draft's first create loses its response (the task is adopted when it calls back) and
    # that task fails transiently; the draft's retry completes; the approved final completes.
    text = prompt("A ticket quotes any task", "#lost-response", "#fail=service_errorx1")
    started = await start(stack, text, quality="480p", duration=4, draft_first=True)
    workflow_id = started.view.id
    await wait_for_status(stack, workflow_id, GenerationStatus.AWAITING_APPROVAL)
    await decide_approval(stack.client, workflow_id, approved=True)
    view = await finished(stack, workflow_id)

    assert view.status is GenerationStatus.DELIVERED, view.failure_message
    made = [task["id"] for task in sorted(sim_tasks_for(stack, text), key=lambda t: t["created"])]
    assert len(made) == 3 and sorted(view.provider_task_ids) == sorted(made)
    assert view.draft is not None and len(view.draft.provider_task_ids) == 2
    for task_id in made:
        assert await assert_eventually(partial(found_by_task, stack, task_id), every=0.1) == [workflow_id]
    attrs = (await stack.client.get_workflow_handle(workflow_id).describe()).typed_search_attributes
    assert attrs.get(sa.PROVIDER_TASK_IDS) == view.provider_task_ids
    assert attrs.get(sa.PROVIDER_TASK_ID) == view.provider_task_ids[-1]  # deprecated: the latest
    await assert_replays(stack, workflow_id, "draft-retry-orphan")
