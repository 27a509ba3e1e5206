"""The HTTP API: tenants, cancel, approval."""

from __future__ import annotations

import uuid

import httpx

from tests.helpers.api import (
    auth,
    started,
)
from tests.helpers.fake_provider import FakeProvider
from workflows.ids import generation_workflow_id


async def test_another_tenants_generation_is_404_like_an_unknown_one(http: httpx.AsyncClient) -> None:
    theirs = (await started(http))["id"]
    unknown = generation_workflow_id("demo", "nobody", uuid.uuid4().hex)
    for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/approve"), ("POST", "/reject")):
        cross = await http.request(method, f"/v1/generations/{theirs}{suffix}", headers=auth("acme"))
        missing = await http.request(method, f"/v1/generations/{unknown}{suffix}", headers=auth("acme"))
        assert cross.status_code == missing.status_code == 404
        assert cross.json()["error"]["type"] == missing.json()["error"]["type"] == "not_found"
        assert cross.json()["error"]["message"].replace(theirs, "ID") == missing.json()["error"][
            "message"
        ].replace(unknown, "ID")
    assert (await http.get(f"/v1/generations/{theirs}", headers=auth("demo"))).status_code == 200


async def test_approve_and_reject_are_409_when_nothing_awaits_approval(http: httpx.AsyncClient) -> None:
    generation = await started(http)
    for verb in ("approve", "reject"):
        response = await http.post(f"/v1/generations/{generation['id']}/{verb}", headers=auth("demo"))
        assert response.status_code == 409, response.text
        assert response.json()["error"]["type"] == "not_awaiting_approval"


async def test_cancel_works_while_running_and_returns_an_ended_one_unchanged(
    http: httpx.AsyncClient, provider: FakeProvider
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    cancelled = await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert provider.tasks[task_id].status == "cancelled"  # the provider task was cancelled too
    again = await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    assert again.status_code == 200
    assert again.json() == cancelled.json()
