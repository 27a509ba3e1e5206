"""The throughput baseline: a workflow with as many no-op activities as a happy-path generation
(create, re-read, re-host), in a module of its own so the sandbox imports nothing else."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bare_step")
async def bare_step(n: int) -> int:
    return n + 1


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self, steps: int) -> int:
        total = 0
        for _ in range(steps):
            total = await workflow.execute_activity(
                bare_step, total, start_to_close_timeout=timedelta(seconds=30)
            )
        return total
