"""Webhooks' pure parts: our signatures verify with `standardwebhooks` (both secrets during a
rotation), derived secrets, the configured endpoints' errors, the progress sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from webhooks.endpoints import parse_configured_endpoints
from webhooks.signing import BadSecret, derive_secret, signed_headers
from workflows.models import GenerationStatus, GenerationView
from workflows.progress import ProgressLog
from workflows.webhook_models import EventType, webhook_id

KEY = b"unit-test-signing-key"
OLD, NEW = derive_secret(KEY, "acme", "ep_1", "1"), derive_secret(KEY, "acme", "ep_1", "2")
BODY = b'{"type":"generation.delivered","data":{"id":"gen-acme-1"}}'


def now() -> int:
    return int(datetime.now(UTC).timestamp())


def test_signature_verifies_with_standardwebhooks_and_rejects_tampering() -> None:
    headers = signed_headers([NEW], "msg_1", now(), BODY)
    assert Webhook(NEW).verify(BODY, headers)["type"] == "generation.delivered"
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(BODY.replace(b"gen-acme-1", b"gen-acme-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):  # the id is signed: a replay under another id fails
        Webhook(NEW).verify(BODY, {**headers, "webhook-id": "msg_2"})


def test_two_active_secrets_during_rotation_each_verify() -> None:
    headers = signed_headers([NEW, OLD], "msg_1", now(), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(NEW).verify(BODY, headers) and Webhook(OLD).verify(BODY, headers)


def test_derived_secrets_differ_by_scope_and_version_and_are_well_formed() -> None:
    assert OLD != NEW != derive_secret(KEY, "other", "ep_1", "2")
    assert OLD == derive_secret(KEY, "acme", "ep_1", "1") and OLD.startswith("whsec_")
    with pytest.raises(BadSecret):
        signed_headers(["whsec_c2hvcnQ="], "msg_1", now(), BODY)


def test_webhook_id_is_stable_per_generation_and_event() -> None:
    assert webhook_id("gen-a", EventType.DELIVERED) == webhook_id("gen-a", EventType.DELIVERED)
    assert len({webhook_id("gen-a", e) for e in EventType} | {webhook_id("gen-b", EventType.DELIVERED)}) == 6


def test_configured_endpoints_errors_name_the_field_never_the_secret() -> None:
    secret = derive_secret(KEY, "x")
    good = {"tenant": "acme", "id": "main", "url": "https://h.example/x", "events": ["generation.failed"]}
    assert parse_configured_endpoints(f"[{_json(good | {'secrets': [secret]})}]")[0].id == "main"
    with pytest.raises(ValueError, match=r"WEBHOOK_ENDPOINTS\[0\]: invalid secrets") as caught:
        parse_configured_endpoints(f"[{_json(good | {'secrets': ['whsec_short-and-secret']})}]")
    assert "short-and-secret" not in str(caught.value)
    with pytest.raises(ValueError, match=r"invalid events"):
        parse_configured_endpoints(f"[{_json(good | {'events': ['generation.nope'], 'secrets': [secret]})}]")
    with pytest.raises(ValueError, match="JSON list"):
        parse_configured_endpoints("{}")


def test_progress_log_numbers_each_change_once_and_estimates_eta() -> None:
    log, t0 = ProgressLog(), datetime(2026, 1, 1, tzinfo=UTC)
    view = GenerationView(id="g", tenant="t", user_id="u")
    log.record(view, t0)
    log.record(view, t0 + timedelta(seconds=1))  # no change: no event
    view.status, view.stage, view.progress = GenerationStatus.PROCESSING, "provider processing 25%", 25
    log.record(view, t0 + timedelta(seconds=10))
    view.status, view.stage, view.progress = GenerationStatus.REHOSTING, "re-hosting", 99
    log.record(view, t0 + timedelta(seconds=12))
    assert [e.seq for e in log.events] == [1, 2, 3]
    # 10 s since the task was queued for 25 %: 30 s for the other 75 %; none once re-hosting.
    assert [e.eta_seconds for e in log.events] == [None, 30.0, None]
    assert [e.seq for e in log.after(2)] == [3] and log.after(3) == []


def _json(value: object) -> str:
    import json

    return json.dumps(value)
