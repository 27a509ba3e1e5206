"""The HTTP API: authentication and idempotency."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from temporalio.client import Client

from tests.helpers.api import (
    GENERATION_FIELDS,
    TENANT_KEYS,
    auth,
    body,
    create,
    field_names,
)
from tests.helpers.fake_provider import FakeProvider
from workflows.ids import generation_workflow_id


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Bearer {TENANT_KEYS['demo']}x"},
        {"Authorization": f"Bearer {TENANT_KEYS['demo'][:-1]}"},
        {"Authorization": f"Basic {TENANT_KEYS['demo']}"},
        {"Authorization": TENANT_KEYS["demo"]},
        {"Authorization": "Bearer"},
    ],
)
async def test_missing_or_invalid_key_is_401(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for response in (
        await http.get("/v1/generations", headers=headers),
        await http.get("/v1/generations/gen-demo-0", headers=headers),
        await http.post("/v1/generations", json=body(), headers={**headers, "Idempotency-Key": "k"}),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("key", [None, b"", b"x" * 256, "clé".encode(), b"a\tb"])
async def test_idempotency_key_is_required_400(http: httpx.AsyncClient, key: bytes | None) -> None:
    headers = {k.encode(): v.encode() for k, v in auth("demo").items()}
    if key is not None:
        headers[b"Idempotency-Key"] = key
    response = await http.post("/v1/generations", json=body(), headers=headers)
    assert response.status_code == 400, response.text
    assert field_names(response) == {"Idempotency-Key"}


async def test_first_post_is_202_and_the_repeat_is_200_with_the_same_generation(
    http: httpx.AsyncClient, provider: FakeProvider
) -> None:
    payload, key = body(duration=6, quality="480p", aspect_ratio="9:16", scenario="ambient"), "click-1"
    first = await create(http, payload, key=key)
    assert first.status_code == 202, first.text
    generation = first.json()
    assert GENERATION_FIELDS <= set(generation)
    assert generation["id"] == generation_workflow_id("demo", "user-1", key)
    assert (generation["mode"], generation["scenario"]) == ("text-to-video", "ambient")
    await provider.wait_for_task(generation["id"])
    again = await create(http, payload, key=key)
    assert again.status_code == 200
    assert again.json()["id"] == generation["id"]
    # Omitted fields are the contract's defaults, so spelling them out is the same request.
    explicit = await create(http, {**payload, "model": "seedance-1.5-pro", "generate_audio": True}, key=key)
    assert (explicit.status_code, explicit.json()["id"]) == (200, generation["id"])
    fetched = await http.get(f"/v1/generations/{generation['id']}", headers=auth("demo"))
    assert fetched.status_code == 200
    assert fetched.json()["status"] in ("queued", "processing")
    assert provider.creates[generation["id"]] == 1


async def test_same_key_different_body_is_409(http: httpx.AsyncClient) -> None:
    payload, key = body(), uuid.uuid4().hex
    assert (await create(http, payload, key=key)).status_code == 202
    conflict = await create(http, {**payload, "duration": 8}, key=key)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["type"] == "idempotency_conflict"
    assert "different request" in conflict.json()["error"]["message"]


async def test_same_key_from_another_user_or_tenant_is_another_generation(http: httpx.AsyncClient) -> None:
    key = uuid.uuid4().hex
    mine = await create(http, body(), key=key)
    other_user = await create(http, body(user_id="user-2"), key=key)
    other_tenant = await create(http, body(), key=key, tenant="acme")
    assert [r.status_code for r in (mine, other_user, other_tenant)] == [202, 202, 202]
    assert len({r.json()["id"] for r in (mine, other_user, other_tenant)}) == 3


async def test_concurrent_duplicate_posts_start_exactly_one_workflow(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    payload, key = body(), uuid.uuid4().hex
    responses = await asyncio.gather(*(create(http, payload, key=key) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [202]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    workflow_id = ids.pop()
    await provider.wait_for_task(workflow_id)
    assert provider.creates[workflow_id] == 1
    runs = [w async for w in temporal.list_workflows(f"WorkflowId = '{workflow_id}'")]
    assert len({w.run_id for w in runs}) <= 1
