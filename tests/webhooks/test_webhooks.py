"""Webhooks on real servers: a receiver verifies every delivery with `standardwebhooks` and sees
each state once; a 410 disables the endpoint (durably, in the tenant's registry) and later
generations do not notify it; SSRF destinations are refused at the API and at send time; no
redirect is followed and only a few KB of an answer are read."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from standardwebhooks import Webhook
from temporalio.api.enums.v1 import EventType as EventType_

from devstack.testbed import Testbed
from storage import make_minio
from tests.helpers import assert_eventually
from tests.helpers.api import FakeDns, body
from tests.helpers.flow import assert_replays, finished, prompt
from tests.helpers.receiver import receiving
from webhooks.endpoints import check_destination
from workflows.models import GenerationStatus, GenerationView
from workflows.webhook_models import (
    MAX_RESPONSE_BYTES,
    NOTIFY_URL_ENDPOINT,
    AttemptInput,
    AttemptOutcome,
    EventType,
    PlannedTarget,
    webhook_id,
)

CHILD_STARTED = EventType_.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED


async def post(http: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await http.post(
        "/v1/generations", json=body(**fields), headers={"Idempotency-Key": uuid.uuid4().hex}
    )


async def child_starts(stack: Testbed, workflow_id: str) -> int:
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    return sum(1 for e in history.events if e.event_type == CHILD_STARTED)


async def deliveries(http: httpx.AsyncClient, generation_id: str) -> dict[str, list[dict[str, Any]]]:
    response = await http.get(f"/v1/generations/{generation_id}/deliveries")
    assert response.status_code == 200, response.text
    return {record["event"]: record["targets"] for record in response.json()["data"]}


async def test_each_state_reaches_the_receiver_once_signed_and_as_the_api_shows_it(
    stack: Testbed, hooks: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    secret = (await admin.get("/hooks/webhook-endpoints")).json()["notify_url_secret"]
    with receiving(secret) as receiver:
        created = await post(
            hooks, prompt=prompt("A lighthouse, drafted"), draft_first=True, notify_url=receiver.url
        )
        assert created.status_code == 202, created.text
        generation_id = created.json()["id"]
        draft_events = {EventType.DRAFT_READY.value, EventType.AWAITING_APPROVAL.value}

        async def drafted() -> bool:
            return set(receiver.accepted_events()) == draft_events

        await assert_eventually(drafted, within=30, what="the draft's two events")
        assert (await hooks.post(f"/v1/generations/{generation_id}/approve")).status_code == 200
        view = await finished(stack, generation_id)
        assert view.status is GenerationStatus.DELIVERED

        async def all_three() -> bool:
            return len(receiver.accepted_events()) == 3

        await assert_eventually(all_three, within=30, what="the delivered event")
        got = receiver.received()
        assert all(d.verified for d in got)
        # Exactly one logical event per state, each under its own stable id.
        assert sorted(d.event for d in got) == sorted([*draft_events, EventType.DELIVERED.value])
        assert {d.webhook_id for d in got} == {webhook_id(generation_id, EventType(d.event)) for d in got}
        delivered = next(d for d in got if d.event == EventType.DELIVERED.value)
        assert "X-Amz-Signature=" in delivered.payload["data"]["outputs"][0]["url"]  # a working link
        sent, shown = delivered.payload["data"], (await hooks.get(f"/v1/generations/{generation_id}")).json()
        for generation in (sent, shown):  # presigned afresh on each read: same object, new signature
            for output in generation["outputs"]:
                output["url"] = output["url"].split("?")[0]
            generation["draft"]["outputs"] = [o | {"url": ""} for o in generation["draft"]["outputs"]]
        assert sent == shown

    listed = await deliveries(hooks, generation_id)
    assert set(listed) == {*draft_events, EventType.DELIVERED.value}
    for targets in listed.values():
        assert [(t["endpoint_id"], t["state"], len(t["attempts"])) for t in targets] == [
            (NOTIFY_URL_ENDPOINT, "delivered", 1)
        ]
        assert targets[0]["attempts"][0]["status_code"] == 200
    # Every immediate attempt, the generation's own, was accepted: no delivery workflow at all.
    assert await child_starts(stack, generation_id) == 0
    await assert_replays(stack, generation_id, "webhooks-draft")


async def test_410_disables_the_endpoint_durably_and_later_generations_skip_it(
    stack: Testbed, hooks_api: Any, admin: httpx.AsyncClient
) -> None:
    with receiving() as receiver:
        made = await admin.post(
            "/gone/webhook-endpoints", json={"url": receiver.url, "events": [EventType.DELIVERED.value]}
        )
        assert made.status_code == 201, made.text
        endpoint = made.json()
        # Rotated before the delivery: the new secret and the old one both sign it.
        rotated = await admin.post(f"/gone/webhook-endpoints/{endpoint['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        new, old = rotated.json()["secrets"]
        assert old == endpoint["secrets"][0] and new != old
        receiver.secrets, receiver.status = [old], 410
        async with hooks_api.client("gone", str(stack.tls.ca)) as gone:
            first = (await post(gone, prompt=prompt("A train leaving"))).json()["id"]
            await finished(stack, first)

            async def disabled() -> list[dict[str, Any]] | None:
                targets = (await deliveries(gone, first)).get(EventType.DELIVERED.value)
                return targets if targets and targets[0]["state"] == "endpoint_disabled" else None

            targets = await assert_eventually(disabled, within=30, what="the 410 disabling the endpoint")
            assert [a["outcome"] for a in targets[0]["attempts"]] == [AttemptOutcome.GONE.value]
            assert [(d.verified, d.status) for d in receiver.received()] == [(True, 410)]
            sent = receiver.received()[0]
            assert len(sent.headers["webhook-signature"].split()) == 2
            assert Webhook(new).verify(sent.body, sent.headers)["type"] == EventType.DELIVERED.value

            listing = (await admin.get("/gone/webhook-endpoints")).json()["data"]
            assert [e["id"] for e in listing if e["disabled"]] == [endpoint["id"]]
            assert "410" in listing[0]["disabled"]["reason"]

            # The registry is the durable state: a later generation is not planned to it at all
            # (no delivery, and nothing in its history).
            second = (await post(gone, prompt=prompt("A train arriving"))).json()["id"]
            await finished(stack, second)
            assert await child_starts(stack, second) == 0
            assert await child_starts(stack, first) == 0  # the 410 answered the generation's own attempt
            assert len(receiver.received()) == 1

        changed = await admin.patch(f"/gone/webhook-endpoints/{endpoint['id']}", json={"enabled": True})
        assert changed.status_code == 200, changed.text
        assert [e["disabled"] for e in changed.json()["data"]] == [None]
        assert (await admin.delete(f"/gone/webhook-endpoints/{endpoint['id']}")).status_code == 204


SSRF = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://10.0.0.7/hook",  # private
    "http://[::1]:8080/hook",  # loopback, not allow-listed
    "http://0x7f000002/hook",  # loopback (not the allow-listed 127.0.0.1) in another spelling
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://user:pw@hooks.example/",  # credentials
    "ftp://hooks.example/",
]


async def test_ssrf_destinations_are_refused_before_anything_starts(
    stack: Testbed, hooks: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    for url in SSRF:
        response = await post(hooks, notify_url=url)
        assert response.status_code == 422, (url, response.text)
        assert [f["field"] for f in response.json()["error"]["fields"]] == ["notify_url"], url
        made = await admin.post(
            "/hooks/webhook-endpoints", json={"url": url, "events": ["generation.failed"]}
        )
        assert made.status_code == 422 and made.json()["error"]["fields"][0]["field"] == "url", url
    # The admin API: its own key, configured tenants only.
    assert (await hooks.get("/v1/admin/tenants/hooks/webhook-endpoints")).status_code == 401
    assert (await admin.get("/nobody/webhook-endpoints")).status_code == 404
    # Outside dev, HTTPS only.
    production = stack.settings.model_copy(update={"environment": "production"})
    problem = None
    try:
        check_destination(production, "http://hooks.example/")
    except Exception as exc:
        problem = str(exc)
    assert problem == "URL must use HTTPS"


async def test_send_time_checks_no_redirects_and_bounded_answers(stack: Testbed) -> None:
    from activities.webhooks import WebhookActivities

    view = GenerationView(
        id="gen-hooks-" + "0" * 32, tenant="hooks", user_id="u", status=GenerationStatus.FAILED
    )

    def job(url: str) -> AttemptInput:
        target = PlannedTarget(endpoint_id=NOTIFY_URL_ENDPOINT, events=[EventType.FAILED], url=url)
        return AttemptInput(
            tenant="hooks",
            generation_id=view.id,
            event=EventType.FAILED,
            webhook_id=webhook_id(view.id, EventType.FAILED),
            target=target,
            attempt=1,
            view=view,
        )

    # A name that passed the API's check but now resolves to loopback (DNS rebinding).
    dns = FakeDns({"hooks.example": ["127.0.0.1"], "meta.example": ["169.254.169.254"]})
    sender = WebhookActivities(stack.settings, stack.client, make_minio(stack.settings), resolver=dns)
    try:
        for url in ("http://hooks.example/x", "http://meta.example/x", "http://169.254.169.254/x"):
            refused = await sender.attempt(job(url))
            assert refused.outcome is AttemptOutcome.REFUSED and refused.status_code is None, url
        secret = sender.directory.notify_secret("hooks")
        with receiving(secret) as target, receiving(secret) as receiver:
            receiver.status, receiver.location = 302, target.url
            redirected = await sender.attempt(job(receiver.url))
            assert (redirected.outcome, redirected.status_code) == (AttemptOutcome.FAILED, 302)
            assert target.received() == []
            receiver.status, receiver.location = 500, None
            failed = await sender.attempt(job(receiver.url))
            assert failed.outcome is AttemptOutcome.FAILED and failed.status_code == 500
            assert failed.response_excerpt is not None and len(failed.response_excerpt) == MAX_RESPONSE_BYTES
    finally:
        await sender.close()
