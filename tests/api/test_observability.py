"""The HTTP API: observability and secrets."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest

from api.redact import REDACTED, redact, redact_body
from api.service import Recent
from tests.helpers.api import (
    CALLBACK_SECRET,
    TENANT_KEYS,
    auth,
    body,
    callback_path,
    create,
    metric,
    started,
)
from tests.helpers.fake_provider import FakeProvider
from workflows.callback_token import mint_callback_token


async def test_metrics_count_requests_callbacks_and_generations(
    http: httpx.AsyncClient, provider: FakeProvider
) -> None:
    before = (await http.get("/metrics")).text
    payload, key = body(), uuid.uuid4().hex
    generation = (await create(http, payload, key=key)).json()
    await create(http, payload, key=key)
    await create(http, {**payload, "duration": 7}, key=key)
    await create(http, body(duration=1))
    task_id = await provider.wait_for_task(generation["id"])
    await http.post(callback_path(generation["id"]), json={"id": task_id})
    await http.post("/callbacks/gptimage2/forged.0123456789abcdef0123456789abcdef", json={"id": task_id})
    after = (await http.get("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    for outcome in ("started", "duplicate", "conflict", "invalid"):
        assert grew("api_generation_requests_total", outcome=outcome) == 1, outcome
    assert grew("api_callbacks_total", outcome="accepted") == 1
    assert grew("api_callbacks_total", outcome="bad_token") == 1
    assert grew("api_callback_seconds_count") == 2
    assert grew("api_requests_total", route="/v1/generations", method="POST", status="202") == 1
    assert grew("api_requests_total", route="/callbacks/gptimage2/{token}", method="POST", status="401") == 1
    assert generation["id"] not in after  # routes are labelled by template, never by id or token


async def test_secrets_never_reach_the_logs(
    http: httpx.AsyncClient, provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    token = mint_callback_token(CALLBACK_SECRET, generation["id"])
    signed = "https://cdn.provider.invalid/v.mp4?X-Amz-Credential=AKIAABCDEFGHIJKLMNOP&X-Amz-Signature=deadbeefcafe"
    callback = {
        "id": task_id,
        "status": "completed",
        "results": [signed],
        "api_key": "sk-live-0123456789abcdefghij",
        "headers": {"Authorization": "Bearer provider-bearer-secret"},
    }
    with caplog.at_level(logging.DEBUG):
        assert (await http.post(f"/callbacks/gptimage2/{token}", json=callback)).status_code == 200
        await http.get("/v1/generations", headers=auth("acme"))
        await http.get("/v1/generations", headers={"Authorization": "Bearer guessed-key"})
    # What the API process wrote; the test's own HTTP client logs its URLs, tokens included.
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert task_id in text and REDACTED in text  # the body was logged, redacted
    for secret in (
        "deadbeefcafe",
        "AKIAABCDEFGHIJKLMNOP",
        "sk-live-0123456789abcdefghij",
        "provider-bearer-secret",
        token.rpartition(".")[2],
        TENANT_KEYS["acme"],
        "guessed-key",
    ):
        assert secret not in text, secret


@pytest.mark.parametrize(
    ("raw", "kept", "gone"),
    [
        ('{"url": "https://a.example/v.mp4?sig=abc123&exp=1"}', "https://a.example/v.mp4?", "abc123"),
        ('{"access_token": "tok-123456"}', "access_token", "tok-123456"),
        ('{"Authorization": "Bearer xyz987"}', "Authorization", "xyz987"),
        ('{"secret_key": 123456789}', "secret_key", "123456789"),
        ("Authorization: Bearer abc.def.ghi", "Authorization", "abc.def.ghi"),
        ('{"note": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"}', "note", "eyJhbGciOiJIUzI1NiJ9"),
        ('{"id": "task-1", "status": "completed"}', '"id": "task-1"', "[REDACTED]"),
    ],
)
def test_redaction(raw: str, kept: str, gone: str) -> None:
    cleaned = redact(raw)
    assert kept in cleaned and gone not in cleaned


def test_logged_bodies_are_bounded() -> None:
    logged = redact_body(b'{"id": "t", "pad": "' + b"x" * 10_000 + b'"}', 2048)
    assert len(logged) < 2100 and logged.endswith("bytes]")


def test_recent_keys_forget_the_oldest_first() -> None:
    recent: Recent[tuple[str, str, str]] = Recent(2)
    a, b, c = (
        ("gen-a", "task-1", "completed"),
        ("gen-b", "task-2", "completed"),
        ("gen-a", "task-1", "failed"),
    )
    recent.add(a)
    recent.add(b)
    assert a in recent  # and is now the most recently used
    recent.add(c)
    assert a in recent and c in recent and b not in recent and len(recent) == 2
    off: Recent[tuple[str, str, str]] = Recent(0)
    off.add(a)
    assert a not in off and len(off) == 0
