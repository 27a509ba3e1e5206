"""`worker.build_worker` is the one way a worker is built, so a test or a benchmark that
registers its own activities or workflow runs the sandbox the product runs: the project's
modules and the workflow's own module shared with the sandbox, not re-imported per run (which
costs the product a fifth of its CPU, and would make a baseline cheaper or dearer than the
product for reasons of its own).

A workflow reports the identity of module-level objects as its sandbox sees them: the same
objects as here when the module is shared, fresh copies when the sandbox re-imported it.
"""

from __future__ import annotations

import uuid

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import workflows.models

MARKER = object()


def identities() -> list[int]:
    return [id(MARKER), id(workflows.models.GenerationStatus)]


@workflow.defn
class IdentityWorkflow:
    @workflow.run
    async def run(self) -> list[int]:
        return identities()


async def run_on(env: WorkflowEnvironment, make: type[Worker] | None) -> list[int]:
    # Imported here: the SDK's default sandbox re-imports this module, and worker.py's imports
    # (httpx, minio) are not allowed in a sandbox.
    from worker import build_worker

    queue = f"seam-{uuid.uuid4().hex[:8]}"
    worker = (
        build_worker(env.client, queue, [], workflows=[IdentityWorkflow])
        if make is None
        else make(env.client, task_queue=queue, workflows=[IdentityWorkflow])
    )
    async with worker:
        return await env.client.execute_workflow(
            IdentityWorkflow.run, id=f"seam-{uuid.uuid4().hex}", task_queue=queue
        )


async def test_build_worker_shares_the_project_and_workflow_modules(
    temporal_env: WorkflowEnvironment,
) -> None:
    assert await run_on(temporal_env, None) == identities()


async def test_a_worker_built_otherwise_would_not(temporal_env: WorkflowEnvironment) -> None:
    """The check can fail: the SDK's default sandbox re-imports this module for the run."""
    assert (await run_on(temporal_env, Worker))[0] != identities()[0]
