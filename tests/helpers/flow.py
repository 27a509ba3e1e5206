"""Helpers shared by the end-to-end tests: unique prompts, starting and awaiting generations,
and reading bytes back from the provider and the store to compare hashes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import WorkflowHandle
from temporalio.worker import Replayer

from devstack.testbed import Testbed, converter_for_testbeds
from storage import ObjectManifest, manifest_key
from tests.helpers import assert_eventually
from workflows.control import StartResult, describe_generation, start_generation
from workflows.generation import VideoGenerationWorkflow
from workflows.models import GenerationSpec, GenerationStatus, GenerationView, RetryBudget

HISTORIES = Path(__file__).parent.parent / "histories"

FAST = {"poll_initial_seconds": 2.0, "poll_max_seconds": 4.0}


def prompt(text: str, *directives: str) -> str:
    """A prompt no other test uses, so the simulator's per-prompt counters are this test's."""
    return " ".join([text, f"[run {uuid.uuid4().hex[:10]}]", *directives])


async def start(
    stack: Testbed,
    text: str,
    *,
    key: str | None = None,
    budget: RetryBudget | None = None,
    tenant: str = "demo",
    **spec: Any,
) -> StartResult:
    """`tenant`: a test of the report gives its generations a tenant of their own."""
    tuning = {**FAST, **spec.pop("tuning", {})}
    return await start_generation(
        stack.client,
        tenant=tenant,
        idempotency_key=key or uuid.uuid4().hex,
        spec=GenerationSpec(user_id="user-1", prompt=text, **spec),
        task_queue=stack.task_queue,
        budget=budget,
        tuning=tuning,
    )


async def finished(stack: Testbed, workflow_id: str, within: float = 60) -> GenerationView:
    handle: WorkflowHandle[Any, GenerationView] = stack.client.get_workflow_handle_for(
        VideoGenerationWorkflow.run, workflow_id
    )
    return await asyncio.wait_for(handle.result(), within)


async def first_task_id(stack: Testbed, workflow_id: str, within: float = 20) -> str:
    """The generation's first provider task id, once the workflow has created it."""
    handle = stack.client.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)

    async def created() -> str | None:
        view = await handle.query(VideoGenerationWorkflow.view)
        return view.provider_task_ids[0] if view.provider_task_ids else None

    return await assert_eventually(created, within=within, what=f"a provider task for {workflow_id}")


async def wait_for_status(stack: Testbed, workflow_id: str, status: GenerationStatus) -> GenerationView:
    """The view once the generation is in `status` (or has ended)."""

    async def reached() -> GenerationView | None:
        view = await describe_generation(stack.client, workflow_id)
        return view if view.status is status or view.is_terminal else None

    return await assert_eventually(reached, within=30, what=f"{workflow_id} reaching {status}")


def replayer() -> Replayer:
    return Replayer(workflows=[VideoGenerationWorkflow], data_converter=converter_for_testbeds())


async def assert_replays(stack: Testbed, workflow_id: str, name: str) -> None:
    """The run's history replays against today's code; with RECORD_HISTORIES=1 it is also kept
    in tests/histories/ as `<name>-<6 hex>.json` (tests/workflows/test_replay.py replays those forever)."""
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
    if os.environ.get("RECORD_HISTORIES"):
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}-{uuid.uuid4().hex[:6]}.json").write_text(history.to_json())


async def provider_sha256(stack: Testbed, url: str) -> str:
    digest = hashlib.sha256()
    async with httpx.AsyncClient(verify=stack.tls.ssl_context()) as http, http.stream("GET", url) as response:
        response.raise_for_status()
        async for chunk in response.aiter_bytes(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sim_tasks_for(stack: Testbed, text: str) -> list[dict[str, Any]]:
    prompt_hash = hashlib.sha256(text.encode()).hexdigest()
    return [t for t in stack.sim.tasks() if t.get("prompt_sha256") == prompt_hash]


def stored_sha256(stack: Testbed, key: str) -> str:
    """The sha256 of the object's bytes as the store returns them."""
    response = stack.s3.minio_client().get_object(stack.s3.bucket, key)
    try:
        digest = hashlib.sha256()
        for chunk in response.stream(1 << 20):
            digest.update(chunk)
    finally:
        response.close()
        response.release_conn()
    return digest.hexdigest()


def stored_manifest(stack: Testbed, key: str) -> ObjectManifest:
    """The private manifest stored beside the video at `key`."""
    response = stack.s3.minio_client().get_object(stack.s3.bucket, manifest_key(key))
    try:
        return ObjectManifest.model_validate_json(response.read())
    finally:
        response.close()
        response.release_conn()


async def assert_rehosted_as_provided(stack: Testbed, view: GenerationView) -> ObjectManifest:
    """The generation's one output is the provider's result byte for byte: the stored object's
    sha256 equals the provider's bytes, the view's and its manifest's, and the object itself
    carries no metadata headers. Returns the manifest."""
    [output] = view.outputs
    async with stack.provider() as provider:
        task = await provider.get_task(view.provider_task_ids[-1])
    assert task.results
    expected = await provider_sha256(stack, task.results[0])
    manifest = stored_manifest(stack, output.object_key)
    assert stored_sha256(stack, output.object_key) == expected == output.sha256 == manifest.sha256
    stat = stack.s3.minio_client().stat_object(stack.s3.bucket, output.object_key)
    assert not [name for name in stat.metadata or {} if name.lower().startswith("x-amz-meta-")]
    assert manifest.task_id == task.id and manifest.size_bytes == output.size_bytes
    return manifest
