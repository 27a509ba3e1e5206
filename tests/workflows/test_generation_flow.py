"""The durable core end to end, on real servers: Temporal dev server, SeaweedFS, the provider
simulator over HTTPS and the API receiving its callbacks."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import httpx
import pytest

from devstack.testbed import Testbed
from gptimage2 import FailureCategory, Mode, VideoParams
from storage import manifest_key
from tests.helpers import assert_eventually
from tests.helpers.flow import (
    assert_rehosted_as_provided,
    finished,
    first_task_id,
    prompt,
    sim_tasks_for,
    start,
    stored_manifest,
    wait_for_status,
)
from tests.helpers.history import assert_event_subsequence, assert_one_create_per_attempt
from workflows import search_attributes as sa
from workflows.callback_token import mint_callback_token
from workflows.control import NotAwaitingApproval, cancel_generation, decide_approval, describe_generation
from workflows.models import GenerationSpec, GenerationStatus, GenerationView, RetryBudget


@pytest.mark.parametrize(
    ("images", "mode"),
    [(0, Mode.TEXT_TO_VIDEO), (1, Mode.IMAGE_TO_VIDEO), (2, Mode.FIRST_LAST_FRAME)],
)
async def test_each_mode_is_delivered_with_verified_bytes_and_metadata(
    stack: Testbed, images: int, mode: Mode
) -> None:
    image_urls = [
        f"{stack.sim.base_url}/_sim/images/sample.png",
        f"{stack.sim.base_url}/_sim/images/sample.jpg",
    ][:images]
    text = prompt('A detective says: "Do not move."')
    started = await start(
        stack, text, image_urls=image_urls, quality="480p", duration=4, generate_audio=images != 1
    )
    assert started.created
    view = await finished(stack, started.view.id)

    assert view.status is GenerationStatus.DELIVERED, view.failure_message
    assert view.mode is mode and len(view.provider_task_ids) == 1 and view.attempts == 1
    assert view.credits > 0
    manifest = await assert_rehosted_as_provided(stack, view)
    [output] = view.outputs
    assert output.size_bytes > 1000 and output.content_type == "video/mp4"
    assert manifest.task_id == view.provider_task_ids[0] and manifest.tenant == "demo"
    assert (manifest.duration, manifest.quality, manifest.audio) == (4, "480p", images != 1)
    assert manifest.user_id == "user-1" and manifest.credits == view.credits
    assert manifest.prompt_hash == GenerationSpec(user_id="u", params=VideoParams(prompt=text)).prompt_hash()
    assert manifest.outcome_category == "passed"
    async with httpx.AsyncClient() as http:  # the delivery URL serves the same bytes
        delivered = await http.get(output.url)
    assert delivered.status_code == 200 and hashlib.sha256(delivered.content).hexdigest() == output.sha256
    # ...and tells whoever holds the link nothing private.
    amz_meta = {name: value for name, value in delivered.headers.items() if name.startswith("x-amz-meta-")}
    assert amz_meta == {}
    assert not [v for v in delivered.headers.values() if "user-1" in v or manifest.task_id in v]
    async with httpx.AsyncClient() as http:  # the manifest is not served by the video's link
        beside = await http.get(output.url.replace(output.object_key, manifest_key(output.object_key)))
    assert beside.status_code == 403


async def test_same_intent_started_concurrently_is_one_workflow_and_one_task(stack: Testbed) -> None:
    text = prompt("A lighthouse at dawn")
    key = uuid.uuid4().hex
    results = await asyncio.gather(
        *(start(stack, text, key=key, quality="480p", duration=4) for _ in range(6))
    )
    assert len({r.view.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    view = await finished(stack, results[0].view.id)
    assert view.status is GenerationStatus.DELIVERED
    again = await start(stack, text, key=key, quality="480p", duration=4)  # after it closed
    assert not again.created and again.view.id == view.id and again.view.status is GenerationStatus.DELIVERED
    assert len(sim_tasks_for(stack, text)) == 1


async def test_same_key_with_another_body_is_refused(stack: Testbed) -> None:
    from workflows.control import IdempotencyConflict

    key = uuid.uuid4().hex
    text = prompt("A boat", "#gen=1")
    first = await start(stack, text, key=key, quality="480p", duration=4)
    with pytest.raises(IdempotencyConflict):
        await start(stack, text, key=key, quality="480p", duration=5)
    await finished(stack, first.view.id)


async def test_callbacks_all_dropped_are_covered_by_polling(stack: Testbed) -> None:
    started = await start(stack, prompt("Rain on a window", "#nocallback"), quality="480p", duration=4)
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED
    assert view.callbacks_received == 0 and view.polls >= 1


async def test_duplicate_callbacks_do_no_harm(stack: Testbed) -> None:
    text = prompt("Waves on rocks", "#dupcallback")
    started = await start(stack, text, quality="480p", duration=4, tuning={"poll_initial_seconds": 30})
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED and len(view.outputs) == 1
    assert view.attempts == 1 and len(sim_tasks_for(stack, text)) == 1
    # Callbacks are hints: one delivery, one re-read per distinct hint, no second re-host.
    assert view.callbacks_received >= 1


async def test_forged_callback_is_refused_and_orphan_is_recorded_not_acted_on(stack: Testbed) -> None:
    started = await start(stack, prompt("A slow sunrise", "#gen=400"), quality="480p", duration=4)
    workflow_id = started.view.id
    await first_task_id(stack, workflow_id)  # its own task first: the orphan is plainly someone else's
    async with httpx.AsyncClient(verify=stack.tls.ssl_context()) as http:
        forged = await http.post(
            f"{stack.api_url}/callbacks/gptimage2/{workflow_id}.{'0' * 32}",
            json={"id": "task-unified-1-deadbeef", "status": "completed"},
        )
        assert forged.status_code == 401
        # An orphan: a real, valid callback URL, but for a task this generation never created.
        token = mint_callback_token(stack.settings.callback_secret.get_secret_value(), workflow_id)
        orphan = await http.post(
            f"{stack.api_url}/callbacks/gptimage2/{token}",
            json={
                "id": "task-unified-1700000000-0badf00d",
                "status": "completed",
                "usage": {"credits_reserved": 9},
            },
        )
        assert orphan.status_code in (200, 202, 204)

    async def orphan_recorded() -> GenerationView | None:
        view = await describe_generation(stack.client, workflow_id)
        return view if view.orphans else None

    view = await assert_eventually(orphan_recorded, what="the orphan in the view")
    assert [o.task_id for o in view.orphans] == ["task-unified-1700000000-0badf00d"]
    assert view.callbacks_received == 1  # the forged one never reached the workflow
    assert view.status in (GenerationStatus.QUEUED, GenerationStatus.PROCESSING)
    assert view.provider_task_ids and "task-unified-1700000000-0badf00d" not in view.provider_task_ids
    cancelled = await cancel_generation(stack.client, workflow_id)
    assert cancelled.status is GenerationStatus.CANCELLED
    # Not adopted, but it called back on this generation's own URL (this generation made it, and
    # it may be billed): a support ticket quoting it finds the generation.
    described = await stack.client.get_workflow_handle(workflow_id).describe()
    indexed = described.typed_search_attributes.get(sa.PROVIDER_TASK_IDS)
    assert indexed == [*view.provider_task_ids, "task-unified-1700000000-0badf00d"]


async def test_policy_failure_is_never_retried_and_carries_guidance(stack: Testbed) -> None:
    text = prompt("A scene", "#policy")
    started = await start(stack, text, quality="480p", duration=4)
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.FAILED and view.failure_category is FailureCategory.POLICY
    assert view.attempts == 1 and len(sim_tasks_for(stack, text)) == 1
    assert view.guidance and "Rewrite" in view.guidance
    assert view.credits == 0  # reserved credits of a failed task are returned


async def test_transient_failures_get_new_tasks_within_budget(stack: Testbed) -> None:
    text = prompt("A city at night", "#fail=service_errorx2")
    started = await start(stack, text, quality="480p", duration=4, budget=RetryBudget(max_attempts=3))
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED
    assert view.attempts == 3 and len(set(view.provider_task_ids)) == 3
    history = await stack.client.get_workflow_handle(started.view.id).fetch_history()
    assert_one_create_per_attempt(history, attempts=3)


async def test_transient_failures_past_the_budget_fail_transient(stack: Testbed) -> None:
    text = prompt("A desert road", "#fail=generation_timeout")
    started = await start(stack, text, quality="480p", duration=4, budget=RetryBudget(max_attempts=2))
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.FAILED and view.failure_category is FailureCategory.TRANSIENT
    assert view.attempts == 2 and len(sim_tasks_for(stack, text)) == 2
    assert "generation_timeout" in (view.failure_message or "")


async def test_invalid_task_error_is_not_retried(stack: Testbed) -> None:
    text = prompt("Two frames", "#fail=image_dimension_mismatch")
    started = await start(stack, text, quality="480p", duration=4)
    view = await finished(stack, started.view.id)
    assert view.failure_category is FailureCategory.INVALID and view.attempts == 1


async def test_link_expired_before_rehost_fails_expired(stack: Testbed) -> None:
    text = prompt("An old film", "#nocallback", "#gen=20")
    started = await start(
        stack, text, quality="480p", duration=4, tuning={"poll_initial_seconds": 8, "poll_max_seconds": 8}
    )
    task_id = await first_task_id(stack, started.view.id)
    async with stack.provider() as provider:

        async def generated() -> bool:
            return (await provider.get_task(task_id)).is_terminal

        await assert_eventually(generated, within=30, what=f"provider task {task_id} finishing")
    stack.sim.advance_clock(25 * 3600)  # the link's 24 h pass before the workflow's next poll
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.FAILED and view.failure_category is FailureCategory.EXPIRED
    assert "expired" in (view.failure_message or "")


async def test_cancel_mid_generation_cancels_the_provider_task(stack: Testbed) -> None:
    text = prompt("A very long take", "#gen=100000")
    started = await start(stack, text, quality="480p", duration=4)
    await first_task_id(stack, started.view.id)
    view = await cancel_generation(stack.client, started.view.id)
    assert view.status is GenerationStatus.CANCELLED
    async with stack.provider() as provider:
        task = await provider.get_task(view.provider_task_ids[0])
    assert task.status == "cancelled"
    assert view.credits == 0


async def test_ambiguous_create_is_reconciled_by_callback_not_retried(stack: Testbed) -> None:
    text = prompt("A lost answer", "#lost-response")
    started = await start(stack, text, quality="480p", duration=4)
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED, view.failure_message
    assert len(sim_tasks_for(stack, text)) == 1  # never billed twice
    assert view.provider_task_ids == [sim_tasks_for(stack, text)[0]["id"]]
    # From the recorded history: the one create (inline, in the first workflow task) failed as
    # ambiguous, was not run again nor created again as an activity, and the task was adopted
    # from its callback.
    history = await stack.client.get_workflow_handle(started.view.id).fetch_history()
    assert_one_create_per_attempt(history, attempts=1)
    assert_event_subsequence(
        history,
        [
            "MarkerRecorded(create_task)",
            "WorkflowExecutionSignaled(provider_callback)",
            "MarkerRecorded(get_task)",  # reading the task that called back
            "ActivityTaskScheduled(rehost_result)",
            "WorkflowExecutionCompleted",
        ],
    )


async def test_draft_then_approve_runs_the_final_with_the_requested_settings(stack: Testbed) -> None:
    text = prompt('A chef says: "Taste this."')
    started = await start(stack, text, quality="720p", duration=6, generate_audio=True, draft_first=True)
    view = await wait_for_status(stack, started.view.id, GenerationStatus.AWAITING_APPROVAL)
    assert view.status is GenerationStatus.AWAITING_APPROVAL
    assert view.draft is not None and len(view.draft.outputs) == 1
    draft = stored_manifest(stack, view.draft.outputs[0].object_key)
    assert (draft.quality, draft.audio) == ("480p", False)
    await decide_approval(stack.client, started.view.id, approved=True)
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED and view.attempts == 2
    final = stored_manifest(stack, view.outputs[0].object_key)
    assert (final.quality, final.duration) == ("720p", 6)
    assert view.draft is not None and view.outputs[0].object_key != view.draft.outputs[0].object_key
    # The draft: the generation as it stood when the draft was delivered, untouched by the final.
    assert (view.draft.id, view.draft.status, view.draft.attempts) == (f"{view.id}/draft", "delivered", 1)
    assert view.draft.provider_task_ids == view.provider_task_ids[:1] and view.draft.credits < view.credits
    with pytest.raises(NotAwaitingApproval):
        await decide_approval(stack.client, started.view.id, approved=False)


async def test_rejected_draft_costs_only_the_draft(stack: Testbed) -> None:
    started = await start(stack, prompt("A product spin"), draft_first=True)
    await wait_for_status(stack, started.view.id, GenerationStatus.AWAITING_APPROVAL)
    await decide_approval(stack.client, started.view.id, approved=False, note="not the look we want")
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.CANCELLED and view.attempts == 1
    assert view.failure_message == "not the look we want"


async def test_unanswered_draft_times_out(stack: Testbed) -> None:
    started = await start(
        stack, prompt("A forgotten draft"), draft_first=True, tuning={"approval_ttl_seconds": 2}
    )
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.FAILED and view.failure_category is FailureCategory.TIMEOUT
    assert view.draft is not None and view.draft.outputs


async def test_worker_rechecks_images_before_paying_for_a_task(stack: Testbed) -> None:
    # The API checked this URL once; by create time it no longer serves an image.
    text = prompt("An image that changed")
    started = await start(stack, text, image_urls=[f"{stack.sim.base_url}/_sim/images/fake.png"])
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.FAILED and view.failure_category is FailureCategory.INVALID
    assert "image_urls[0]" in (view.failure_message or "")
    assert view.provider_task_ids == [] and sim_tasks_for(stack, text) == []


async def test_api_serves_a_freshly_signed_delivery_url(stack: Testbed) -> None:
    started = await start(stack, prompt("A link that must outlive a day"), quality="480p", duration=4)
    view = await finished(stack, started.view.id)
    await asyncio.sleep(1.1)  # presigned URLs carry a one-second timestamp: let it move on
    async with httpx.AsyncClient(verify=stack.tls.ssl_context()) as http:
        got = await http.get(
            f"{stack.api_url}/v1/generations/{view.id}", headers={"Authorization": "Bearer demo-secret"}
        )
        assert got.status_code == 200, got.text
        [output] = got.json()["outputs"]
        assert output["url"] != view.outputs[0].url and output["object_key"] == view.outputs[0].object_key
        video = await http.get(output["url"])
    assert video.status_code == 200 and hashlib.sha256(video.content).hexdigest() == output["sha256"]
