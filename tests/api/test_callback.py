"""The HTTP API: the provider callback."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from tests.helpers.api import (
    ROOMY,
    ApiWith,
    auth,
    body,
    callback_path,
    create,
    metric,
    query_view,
    started,
)
from tests.helpers.fake_provider import FakeProvider
from workflows.callback_token import mint_callback_token
from workflows.generation import VideoGenerationWorkflow
from workflows.ids import generation_workflow_id


async def test_valid_callback_signals_the_workflow(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    task = {"id": task_id, "status": "processing", "progress": 50, "extra": {"unknown": "fields are fine"}}
    response = await http.post(callback_path(generation["id"]), json=task)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    view = await query_view(temporal, generation["id"])
    assert view.callbacks_received == 1
    # Support reads it from the API: a generation that hears no callbacks only polls.
    fetched = (await http.get(f"/v1/generations/{generation['id']}", headers=auth("demo"))).json()
    assert (fetched["callbacks_received"], fetched["polls"]) == (1, view.polls)


async def test_a_repeated_callback_is_answered_without_a_second_signal(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    path = callback_path(generation["id"])
    duplicates_before = metric((await http.get("/metrics")).text, "api_callbacks_total", outcome="duplicate")
    # The same hint five times at once (a provider retrying while the first is in flight, or
    # duplicating it): one signal, every sender answered 2xx.
    hint = {"id": task_id, "status": "processing"}
    first = await asyncio.gather(*(http.post(path, json=hint) for _ in range(5)))
    assert [r.status_code for r in first] == [200] * 5
    assert {r.json()["status"] for r in first} <= {"accepted", "duplicate"}
    # Later repeats, with fields that do not matter changed, are answered from memory.
    later = await http.post(path, json={**hint, "progress": 70})
    assert later.status_code == 200 and later.json() == {"status": "duplicate"}
    # A new status of the same task is news, and so is another task.
    assert (await http.post(path, json={"id": task_id, "status": "completed"})).json() == {
        "status": "accepted"
    }
    assert (await http.post(path, json={"id": "task-other", "status": "completed"})).json() == {
        "status": "accepted"
    }
    view = await query_view(temporal, generation["id"])
    assert view.callbacks_received == 3
    duplicates = metric((await http.get("/metrics")).text, "api_callbacks_total", outcome="duplicate")
    assert duplicates - duplicates_before == sum(r.json()["status"] == "duplicate" for r in first) + 1


async def test_with_edge_dedup_off_every_repeat_is_signalled(
    api_with: ApiWith, provider: FakeProvider, http: httpx.AsyncClient, temporal: Client
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    async with api_with(ROOMY.model_copy(update={"callback_dedup_entries": 0})) as client:
        for _ in range(2):
            response = await client.post(
                callback_path(generation["id"]), json={"id": task_id, "status": "processing"}
            )
            assert response.json() == {"status": "accepted"}
    # Both reached the workflow, which recognises the second as a duplicate and ignores it.
    assert (await query_view(temporal, generation["id"])).callbacks_received == 2


@pytest.mark.parametrize(
    "path",
    [
        "/callbacks/gptimage2/not-a-token",
        "/callbacks/gptimage2/{id}.0123456789abcdef0123456789abcdef",
        "/callbacks/gptimage2/{other_secret}",
        "/callbacks/gptimage2/{id}",
    ],
)
async def test_callback_with_a_bad_token_is_401_and_signals_nothing(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client, path: str
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    forged = mint_callback_token("some-other-secret", generation["id"])
    url = path.format(id=generation["id"], other_secret=forged)
    response = await http.post(url, json={"id": task_id, "status": "completed"})
    assert response.status_code == 401
    assert (await query_view(temporal, generation["id"])).callbacks_received == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'"id"',
        b"{}",
        b'{"id": 5}',
        b'{"id": ""}',
        b'{"status": "completed"}',
        b"\xff",
    ],
)
async def test_unparseable_callback_is_400_and_signals_nothing(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client, raw: bytes
) -> None:
    generation = await started(http)
    await provider.wait_for_task(generation["id"])
    response = await http.post(
        callback_path(generation["id"]), content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert (await query_view(temporal, generation["id"])).callbacks_received == 0


async def test_callback_parsing_is_tolerant(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    generation = await started(http)
    await provider.wait_for_task(generation["id"])
    odd = {"id": "task-from-elsewhere", "status": 7, "progress": "lots", "usage": "n/a"}
    assert (await http.post(callback_path(generation["id"]), json=odd)).status_code == 200
    view = await query_view(temporal, generation["id"])
    assert view.callbacks_received == 1
    assert [o.task_id for o in view.orphans] == ["task-from-elsewhere"]


async def test_callback_for_an_unknown_generation_is_404(http: httpx.AsyncClient) -> None:
    unknown = generation_workflow_id("demo", "nobody", uuid.uuid4().hex)
    for _ in range(2):  # a refused hint is not remembered as delivered: its retry is refused too
        response = await http.post(callback_path(unknown), json={"id": "task-1", "status": "completed"})
        assert response.status_code == 404


async def test_a_delivered_generation_is_final(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    payload, key = body(), uuid.uuid4().hex
    generation = (await create(http, payload, key=key)).json()
    task_id = await provider.wait_for_task(generation["id"])
    provider.complete(task_id)
    # The callback is only a hint: the workflow re-reads the task, sees it completed, re-hosts.
    assert (
        await http.post(callback_path(generation["id"]), json={"id": task_id, "status": "completed"})
    ).status_code == 200
    handle = temporal.get_workflow_handle_for(VideoGenerationWorkflow.run, generation["id"])
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.status == "delivered" and result.callbacks_received == 1

    # The provider's repeat of that hint is answered from the API's memory; news for an ended
    # generation is acknowledged as late (a non-2xx would only be retried).
    repeat_hint = await http.post(
        callback_path(generation["id"]), json={"id": task_id, "status": "completed"}
    )
    assert (repeat_hint.status_code, repeat_hint.json()) == (200, {"status": "duplicate"})
    late = await http.post(callback_path(generation["id"]), json={"id": task_id, "status": "failed"})
    assert (late.status_code, late.json()) == (200, {"status": "late"})
    fetched = (await http.get(f"/v1/generations/{generation['id']}", headers=auth("demo"))).json()
    assert fetched["status"] == "delivered"
    assert fetched["outputs"][0]["object_key"].endswith("final-0.mp4")
    assert set(fetched["outputs"][0]) == {"url", "object_key", "sha256", "size_bytes", "content_type"}
    assert fetched["provider_task_ids"] == [task_id] and fetched["credits"] > 0
    repeat = await create(http, payload, key=key)
    assert (repeat.status_code, repeat.json()["id"]) == (200, generation["id"])
    assert (await create(http, {**payload, "duration": 9}, key=key)).status_code == 409
    cancel = await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    assert (cancel.status_code, _unsigned(cancel.json())) == (200, _unsigned(fetched))
    assert (
        await http.post(f"/v1/generations/{generation['id']}/approve", headers=auth("demo"))
    ).status_code == 409
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


def _unsigned(view: dict[str, Any]) -> dict[str, Any]:
    """The view with its delivery URLs less the signing second and the signature over it: two
    answers a second apart sign the same URL afresh (storage.with_fresh_urls), all else equal."""
    outputs = []
    for output in view["outputs"]:
        url = urlsplit(output["url"])
        query = [(k, v) for k, v in parse_qsl(url.query) if k not in ("X-Amz-Date", "X-Amz-Signature")]
        outputs.append({**output, "url": url._replace(query=urlencode(query)).geturl()})
    return {**view, "outputs": outputs}


async def test_a_callback_for_an_ended_generation_is_late_and_a_repeat_costs_temporal_nothing(
    api_with: ApiWith, provider: FakeProvider, http: httpx.AsyncClient, temporal: Client
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    assert (
        await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    ).status_code == 200
    handle = temporal.get_workflow_handle_for(VideoGenerationWorkflow.run, generation["id"])
    assert (await asyncio.wait_for(handle.result(), 30)).status == "cancelled"
    path = callback_path(generation["id"])
    # A replica of its own, so its counters see only these callbacks.
    async with api_with(ROOMY) as client:

        async def sent(hint: dict[str, Any]) -> tuple[float, float]:
            before = (await client.get("/metrics")).text
            response = await client.post(path, json=hint)
            assert (response.status_code, response.json()) == (200, {"status": "late"})
            after = (await client.get("/metrics")).text
            late = metric(after, "api_callbacks_total", outcome="late") - metric(
                before, "api_callbacks_total", outcome="late"
            )
            return late, metric(after, "api_temporal_calls_total") - metric(
                before, "api_temporal_calls_total"
            )

        # The first one for this generation learns that it has ended: the signal is refused,
        # and one describe tells "ended" from "never existed".
        assert await sent({"id": task_id, "status": "completed"}) == (1, 2)
        # From then on the replica knows: any callback for it, repeat or news, costs Temporal nothing.
        for hint in (
            {"id": task_id, "status": "completed"},
            {"id": task_id, "status": "failed"},
            {"id": "task-x"},
        ):
            assert await sent(hint) == (1, 0)
    assert (await query_view(temporal, generation["id"])).callbacks_received == 0


async def test_with_memory_off_each_late_callback_asks_temporal_again(
    api_with: ApiWith, provider: FakeProvider, http: httpx.AsyncClient, temporal: Client
) -> None:
    generation = await started(http)
    await provider.wait_for_task(generation["id"])
    await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    await asyncio.wait_for(temporal.get_workflow_handle(generation["id"]).result(), 30)
    async with api_with(ROOMY.model_copy(update={"callback_dedup_entries": 0})) as client:
        for _ in range(2):
            response = await client.post(callback_path(generation["id"]), json={"id": "task-x"})
            assert (response.status_code, response.json()) == (200, {"status": "late"})
        assert metric((await client.get("/metrics")).text, "api_temporal_calls_total") == 4
