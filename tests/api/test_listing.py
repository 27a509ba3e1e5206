"""The HTTP API: listing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import assert_eventually
from tests.helpers.api import (
    auth,
    body,
    create,
    started,
)


async def test_list_is_per_tenant_filtered_and_paginated(http: httpx.AsyncClient) -> None:
    user = f"lister-{uuid.uuid4().hex[:8]}"
    ids = {(await started(http, user_id=user))["id"] for _ in range(3)}
    theirs = (await create(http, body(user_id=user), tenant="acme")).json()["id"]

    async def listed() -> set[str] | None:
        response = await http.get("/v1/generations", params={"user_id": user}, headers=auth("demo"))
        found = {item["id"] for item in response.json()["data"]}
        return found if found >= ids else None

    # Visibility is eventually consistent: wait until the index has caught up.
    assert await assert_eventually(listed, every=0.1) == ids
    page = await http.get("/v1/generations", params={"user_id": user, "page_size": 2}, headers=auth("demo"))
    first = page.json()
    assert len(first["data"]) == 2 and first["next_page_token"]
    rest = await http.get(
        "/v1/generations",
        params={"user_id": user, "page_size": 2, "page_token": first["next_page_token"]},
        headers=auth("demo"),
    )
    assert {i["id"] for i in first["data"]} | {i["id"] for i in rest.json()["data"]} == ids
    assert all(item["status"] in ("queued", "processing") for item in first["data"])
    other = await http.get("/v1/generations", params={"user_id": user}, headers=auth("acme"))
    assert theirs not in ids and {i["id"] for i in other.json()["data"]} <= {theirs}
    assert (
        await http.get(
            "/v1/generations", params={"status": "delivered", "user_id": user}, headers=auth("demo")
        )
    ).json()["data"] == []


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"page_token": "%%%"}, 400),
        ({"page_token": "AAAA"}, 400),
        ({"page_token": "AAAA.0123456789abcdef0123456789abcdef"}, 400),
        ({"page_size": 0}, 422),
        ({"page_size": 101}, 422),
        ({"status": "done"}, 422),
        ({"user_id": "a\x00b"}, 422),
        ({"user_id": "a\u202eb"}, 422),
        ({"user_id": "\ufeffa"}, 422),
        ({"user_id": "u" * 129}, 422),
    ],
)
async def test_bad_list_parameters_are_refused(
    http: httpx.AsyncClient, params: dict[str, Any], status: int
) -> None:
    response = await http.get("/v1/generations", params=params, headers=auth("demo"))
    assert response.status_code == status, response.text


async def test_page_tokens_only_work_for_the_query_they_came_from(http: httpx.AsyncClient) -> None:
    user = f"pager-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        await started(http, user_id=user)

    async def token() -> str | None:
        page = await http.get(
            "/v1/generations", params={"user_id": user, "page_size": 1}, headers=auth("demo")
        )
        value: str | None = page.json()["next_page_token"]
        return value

    sealed = await assert_eventually(token, every=0.1)
    replays = [
        ("acme", {"user_id": user}),  # another tenant
        ("demo", {"user_id": "someone-else"}),  # another filter
        ("demo", {"user_id": user, "status": "queued"}),
    ]
    for tenant, params in replays:
        response = await http.get(
            "/v1/generations", params={**params, "page_token": sealed}, headers=auth(tenant)
        )
        assert response.status_code == 400, (tenant, params)
    ok = await http.get(
        "/v1/generations", params={"user_id": user, "page_token": sealed}, headers=auth("demo")
    )
    assert ok.status_code == 200
