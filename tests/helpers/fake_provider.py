"""A stand-in for the provider at the activity boundary, shared by the tests and the benchmarks.

Its activities carry the real ones' names (`create_task`, `get_task`, `cancel_task`,
`rehost_result`), so `worker.build_worker` runs the production workflow against it: no provider,
no encode, no S3. The callback benchmark runs it as is (every task stays `processing`), with
`prefix="task-bench"` so its ids are recognisable.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from temporalio import activity

from activities.provider import ProviderActivities
from activities.rehost import RehostActivities
from gptimage2 import ProviderTask, Usage
from workflows.models import CreateTaskInput, OutputObject, RehostInput


class FakeProvider:
    """Activities named as the real ones (`create_task`, `get_task`, `cancel_task`,
    `rehost_result`). Tasks stay `processing` until a test ends them."""

    def __init__(self, *, prefix: str = "task-fake") -> None:
        self.prefix = prefix
        self.tasks: dict[str, ProviderTask] = {}
        self.creates: dict[str, int] = {}  # workflow id -> create calls
        self.task_of: dict[str, str] = {}  # workflow id -> latest task id
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        async with self._condition():
            self._condition().notify_all()

    @activity.defn(name=ProviderActivities.create_task.__name__)
    async def create_task(self, request: CreateTaskInput) -> ProviderTask:
        task = ProviderTask(
            id=f"{self.prefix}-{uuid.uuid4().hex[:12]}",
            model=request.params.model,
            created=int(time.time()),
            status="processing",
            progress=10,
            usage=Usage(credits_reserved=float(request.params.duration * 10)),
        )
        self.tasks[task.id] = task
        self.creates[request.workflow_id] = self.creates.get(request.workflow_id, 0) + 1
        self.task_of[request.workflow_id] = task.id
        await self._notify()
        return task

    @activity.defn(name=ProviderActivities.get_task.__name__)
    async def get_task(self, task_id: str) -> ProviderTask:
        return self.tasks[task_id]

    @activity.defn(name=ProviderActivities.cancel_task.__name__)
    async def cancel_task(self, task_id: str) -> ProviderTask | None:
        task = self.tasks[task_id]
        self.tasks[task_id] = task.model_copy(update={"status": "cancelled"})
        return self.tasks[task_id]

    @activity.defn(name=RehostActivities.rehost_result.__name__)
    async def rehost_result(self, request: RehostInput) -> OutputObject:
        key = f"{request.tenant}/{request.workflow_id}/{request.phase}-{request.index}.mp4"
        return OutputObject(
            url=f"https://cdn.invalid/{key}",
            object_key=key,
            sha256="0" * 64,
            size_bytes=1024,
            content_type="video/mp4",
        )

    def activities(self) -> list[Any]:
        return [self.create_task, self.get_task, self.cancel_task, self.rehost_result]

    def complete(self, task_id: str) -> None:
        task = self.tasks[task_id]
        self.tasks[task_id] = task.model_copy(
            update={
                "status": "completed",
                "progress": 100,
                "results": ["https://provider.invalid/video.mp4"],
                "completed_at": int(time.time()),
            }
        )

    async def wait_for_task(self, workflow_id: str, within: float = 15.0) -> str:
        async with asyncio.timeout(within), self._condition():
            await self._condition().wait_for(lambda: workflow_id in self.task_of)
        return self.task_of[workflow_id]
