"""Days-long waits on the time-skipping test server: a draft that waits three days for its
approval is still finished with the requested settings, and one that is never answered times
out after the approval TTL (7 days), without the test waiting for either."""

from __future__ import annotations

import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.testbed import Testbed
from gptimage2 import FailureCategory, VideoParams
from tests.helpers import assert_eventually
from worker import product_worker
from workflows.generation import VideoGenerationWorkflow
from workflows.ids import generation_workflow_id
from workflows.models import (
    ApprovalDecision,
    GenerationInput,
    GenerationSpec,
    GenerationStatus,
    GenerationView,
)

BIN = Path(sys.executable).parent


def draft_input(text: str) -> GenerationInput:
    params = VideoParams(prompt=f"{text} [run {uuid.uuid4().hex[:8]}]")
    spec = GenerationSpec(user_id="user-1", params=params, draft_first=True)
    return GenerationInput(
        tenant="demo",
        idempotency_key=uuid.uuid4().hex,
        spec=spec,
        request_hash=spec.request_hash(),
        poll_initial_seconds=1,
        poll_max_seconds=2,
        # The time-skipping server cannot register custom search attributes.
        index_search_attributes=False,
    )


async def start(client: Client, task_queue: str, text: str) -> tuple[str, GenerationInput]:
    workflow_input = draft_input(text)
    workflow_id = generation_workflow_id("demo", workflow_input.spec.user_id, workflow_input.idempotency_key)
    await client.start_workflow(
        VideoGenerationWorkflow.run, workflow_input, id=workflow_id, task_queue=task_queue
    )
    return workflow_id, workflow_input


async def awaiting_approval(client: Client, workflow_id: str) -> None:
    handle = client.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)

    async def ready() -> bool:
        view = await handle.query(VideoGenerationWorkflow.view)
        if view.is_terminal:
            pytest.fail(f"the draft ended instead: {view.failure_message}")
        return view.status is GenerationStatus.AWAITING_APPROVAL

    await assert_eventually(ready, within=30, what="the draft awaiting approval")


async def settled(client: Client, workflow_id: str) -> GenerationView:
    # Queried, not awaited with result(): the time-skipping server's long poll for the close
    # event can return empty handed.
    handle = client.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)

    async def ended() -> GenerationView | None:
        view = await handle.query(VideoGenerationWorkflow.view)
        return view if view.is_terminal else None

    return await assert_eventually(ended, within=30, what=f"{workflow_id} finishing")


async def test_approval_after_three_days_still_delivers(
    stack: Testbed, skipping: WorkflowEnvironment
) -> None:
    # No callbacks: the provider would call the other Temporal server's API; polling finds the end.
    settings = stack.settings.model_copy(
        update={"callback_base_url": "", "task_queue": f"skip-{uuid.uuid4().hex[:8]}"}
    )
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with (
            stack.provider() as provider,
            product_worker(skipping.client, settings, provider, executor=executor),
        ):
            approved_id, _ = await start(skipping.client, settings.task_queue, "A tram at dusk")
            ignored_id, _ = await start(skipping.client, settings.task_queue, "A draft nobody reads")
            await awaiting_approval(skipping.client, approved_id)
            await awaiting_approval(skipping.client, ignored_id)

            await skipping.sleep(timedelta(days=3))
            approved = skipping.client.get_workflow_handle_for(VideoGenerationWorkflow.run, approved_id)
            await approved.execute_update(VideoGenerationWorkflow.decide, ApprovalDecision(approved=True))
            view = await settled(skipping.client, approved_id)
            assert view.status is GenerationStatus.DELIVERED, view.failure_message
            assert view.attempts == 2 and view.draft is not None

            await skipping.sleep(timedelta(days=5))  # day 8: past the 7-day approval TTL
            ignored = await settled(skipping.client, ignored_id)
            assert ignored.status is GenerationStatus.FAILED
            assert ignored.failure_category is FailureCategory.TIMEOUT
