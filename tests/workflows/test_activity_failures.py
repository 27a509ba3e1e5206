"""Every activity call site of the generation workflow survives its activity failing for good.

The real `VideoGenerationWorkflow` on the real Temporal dev server; only its activities are
stand-ins (the same names, registered on a worker of this module's own), and each test makes one
call site fail: create, the task read while waiting, the task read that adopts an orphan after
an ambiguous create, the re-host, and the cancel that cleans up. Whatever fails, the generation
ends with a status and category and its search attributes final; the workflow execution itself
completes (it fails only on a bug in the workflow).

A local activity's failure reaches workflow code as the raw `ApplicationError` (not wrapped in
`ActivityError` as a normal activity's is): temporalio 1.35, checked on this machine. The `read`
cases are the ones that failed the whole execution before that was handled.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.provider import ProviderActivities
from activities.rehost import RehostActivities
from gptimage2 import ProviderTask, Quality, VideoParams
from tests.helpers.api import stand_in_worker
from tests.helpers.fake_provider import FakeProvider
from workflows import search_attributes as sa
from workflows.control import start_generation
from workflows.generation import VideoGenerationWorkflow
from workflows.ids import generation_workflow_id
from workflows.models import (
    ActivityErrorType,
    CreateTaskInput,
    FailureCategory,
    GenerationSpec,
    GenerationStatus,
    OutputObject,
    ProviderCallback,
    RehostInput,
)


def refused(category: FailureCategory) -> ApplicationError:
    return ApplicationError(
        f"stand-in refused ({category.value})",
        category.value,
        type=ActivityErrorType.PROVIDER_REJECTED,
        non_retryable=True,
    )


class FailingProvider(FakeProvider):
    """`FakeProvider`, except that the call sites planned for a workflow raise instead."""

    def __init__(self) -> None:
        super().__init__()
        self.plans: dict[str, dict[str, BaseException]] = {}  # workflow id -> site -> error

    def _raise_if_planned(self, site: str) -> None:
        error = self.plans.get(activity.info().workflow_id or "", {}).get(site)
        if error is not None:
            raise error

    @activity.defn(name=ProviderActivities.create_task.__name__)
    async def create_task(self, request: CreateTaskInput) -> ProviderTask:
        self._raise_if_planned("create")
        return await super().create_task(request)

    @activity.defn(name=ProviderActivities.get_task.__name__)
    async def get_task(self, task_id: str) -> ProviderTask:
        self._raise_if_planned("get")
        return await super().get_task(task_id)

    @activity.defn(name=ProviderActivities.cancel_task.__name__)
    async def cancel_task(self, task_id: str) -> ProviderTask | None:
        self._raise_if_planned("cancel")
        return await super().cancel_task(task_id)

    @activity.defn(name=RehostActivities.rehost_result.__name__)
    async def rehost_result(self, request: RehostInput) -> OutputObject:
        self._raise_if_planned("rehost")
        return await super().rehost_result(request)


AMBIGUOUS = ApplicationError(
    "stand-in: the create may have reached the provider",
    FailureCategory.TRANSIENT.value,
    type=ActivityErrorType.CREATE_AMBIGUOUS,
    non_retryable=True,
)


@dataclass(frozen=True)
class Case:
    plan: dict[str, BaseException]
    status: GenerationStatus
    category: FailureCategory | None
    said: str
    cleanup_cancels: bool = False  # the task it could no longer follow is cancelled, best effort


CASES = {
    "create-refused": Case(
        {"create": refused(FailureCategory.INVALID)},
        GenerationStatus.FAILED,
        FailureCategory.INVALID,
        "could not create the provider task: stand-in refused",
    ),
    "create-bug": Case(
        {"create": RuntimeError("stand-in bug")},
        GenerationStatus.FAILED,
        FailureCategory.INTERNAL,
        "could not create the provider task: stand-in bug",
    ),
    "read-refused": Case(
        {"get": refused(FailureCategory.INTERNAL)},
        GenerationStatus.FAILED,
        FailureCategory.INTERNAL,
        "could not read the provider task: stand-in refused",
        cleanup_cancels=True,
    ),
    "read-after-ambiguous-create": Case(
        {"create": AMBIGUOUS, "get": refused(FailureCategory.INTERNAL)},
        GenerationStatus.FAILED,
        FailureCategory.INTERNAL,
        "could not read the provider task: stand-in refused",
    ),
    "rehost-refused": Case(
        {"rehost": refused(FailureCategory.INTERNAL)},
        GenerationStatus.FAILED,
        FailureCategory.INTERNAL,
        "could not re-host the result: stand-in refused",
    ),
    "cancel-refused": Case(
        {"cancel": refused(FailureCategory.INTERNAL)},
        GenerationStatus.CANCELLED,
        None,
        "cancelled by request",
    ),
}


@pytest.fixture(scope="module")
async def failing(temporal_env: WorkflowEnvironment) -> AsyncIterator[tuple[FailingProvider, str]]:
    provider = FailingProvider()
    async with stand_in_worker(temporal_env.client, provider, "activity-failures") as task_queue:
        yield provider, task_queue


async def start_planned(client: Client, task_queue: str, provider: FailingProvider, case: Case) -> str:
    """Starts a generation whose planned call sites fail from their first call (the plan is
    keyed by the workflow id, derived from the idempotency key before the start)."""
    key = uuid.uuid4().hex
    provider.plans[generation_workflow_id("demo", "user-1", key)] = case.plan
    started = await start_generation(
        client,
        tenant="demo",
        idempotency_key=key,
        spec=GenerationSpec(
            user_id="user-1", params=VideoParams(prompt="stand-in", quality=Quality.P480, duration=4)
        ),
        task_queue=task_queue,
        tuning={"poll_initial_seconds": 1.0, "poll_max_seconds": 1.0},
    )
    return started.view.id


@pytest.mark.parametrize("name", list(CASES))
async def test_each_activity_call_site_ends_the_generation_not_the_workflow(
    temporal_env: WorkflowEnvironment, failing: tuple[FailingProvider, str], name: str
) -> None:
    provider, task_queue = failing
    case = CASES[name]
    client = temporal_env.client
    workflow_id = await start_planned(client, task_queue, provider, case)
    handle = client.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)
    if "create" in case.plan and "get" in case.plan:
        # A task the lost create made calls back on this generation's URL: the orphan is read.
        await handle.signal(
            VideoGenerationWorkflow.provider_callback,
            ProviderCallback(task_id="task-orphan-1", status="processing", credits=12),
        )
    elif "rehost" in case.plan:
        provider.complete(await provider.wait_for_task(workflow_id))
    elif "cancel" in case.plan:
        await provider.wait_for_task(workflow_id)
        await handle.execute_update(VideoGenerationWorkflow.request_cancel)

    view = await handle.result()  # a result: the execution itself did not fail

    assert view.status is case.status, view
    assert view.failure_category is case.category
    assert case.said in (view.stage if case.category is None else view.failure_message or "")
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.COMPLETED
    attrs = description.typed_search_attributes
    assert attrs.get(sa.STATUS) == case.status.value
    assert attrs.get(sa.FAILURE_CATEGORY) == (case.category.value if case.category else None)
    assert attrs.get(sa.ATTEMPTS) == view.attempts == 1
    assert attrs.get(sa.CREDITS) == view.credits
    every_task = [*view.provider_task_ids, *(orphan.task_id for orphan in view.orphans)]
    assert (attrs.get(sa.PROVIDER_TASK_IDS) or []) == every_task
    if case.cleanup_cancels:
        [task_id] = view.provider_task_ids
        assert provider.tasks[task_id].status == "cancelled" and view.credits == 0
