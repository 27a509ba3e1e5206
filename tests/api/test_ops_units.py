"""Fast tests of the ops page's parts that need no server: the ops key, the rendering, and the
expected ready time of a generation view."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from api.auth import ops_key
from api.errors import ApiError
from api.expected import TAKING_LONGER, with_expectation
from api.ops import OpsSnapshot, render_page
from api.schemas import GenerationOut
from settings import DEV_ENVIRONMENT, Settings
from workflows.models import GenerationStatus, GenerationView
from workflows.report import GenerationRow, economics, failures_over_time, in_flight, latency_distribution

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KEY = "ops-key-for-tests"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("header", [f"Bearer {KEY}", f"bearer  {KEY}", basic("anyone", KEY), basic("", KEY)])
def test_the_ops_key_opens_as_bearer_or_as_a_basic_password(header: str) -> None:
    ops_key(SecretStr(KEY), "the ops page").check(header)


@pytest.mark.parametrize(
    "header", [None, "", f"Bearer {KEY}x", basic(KEY, "wrong"), "Basic not-base64!", f"Token {KEY}", KEY]
)
def test_anything_else_is_401_with_the_challenge_asked_for(header: str | None) -> None:
    with pytest.raises(ApiError) as refused:
        ops_key(SecretStr(KEY), "the ops page").check(header, challenge='Basic realm="ops"')
    assert refused.value.status_code == 401
    assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="ops"'


def test_without_an_ops_key_everyone_is_refused_and_told_why() -> None:
    with pytest.raises(ApiError) as refused:
        ops_key(None, "the ops page").check(f"Bearer {KEY}")
    assert refused.value.status_code == 403 and "the ops page is off: OPS_API_KEY" in refused.value.message


def out(status: GenerationStatus, created: datetime | None = NOW, **fields: object) -> GenerationOut:
    view = GenerationView(
        id="gen-demo-1", tenant="demo", user_id="u", status=status, stage="provider processing 40%"
    )
    return GenerationOut.from_view(view).model_copy(update={"created_at": created, **fields})


def test_before_the_p95_the_view_says_when_and_the_stage_is_unchanged() -> None:
    view = with_expectation(out(GenerationStatus.PROCESSING), 90.0, NOW + timedelta(seconds=60))
    assert view.expected_ready_at == NOW + timedelta(seconds=90)
    assert view.stage == "provider processing 40%"


def test_past_the_p95_the_stage_says_it_is_taking_longer_than_usual() -> None:
    view = with_expectation(out(GenerationStatus.PROCESSING), 90.0, NOW + timedelta(seconds=91))
    assert view.stage == f"{TAKING_LONGER}: provider processing 40%"


@pytest.mark.parametrize(
    ("status", "p95", "extra"),
    [
        (GenerationStatus.DELIVERED, 90.0, {}),
        (GenerationStatus.AWAITING_APPROVAL, 90.0, {}),  # a person's time, not ours
        (GenerationStatus.PROCESSING, None, {}),  # too little history
        # after approval, in a run from before final_started_at: when it restarted is unknown
        (GenerationStatus.PROCESSING, 90.0, {"draft": out(GenerationStatus.DELIVERED)}),
    ],
)
def test_no_expectation_where_none_can_be_given(
    status: GenerationStatus, p95: float | None, extra: dict[str, Any]
) -> None:
    view = with_expectation(out(status, **extra), p95, NOW + timedelta(days=1))
    assert view.expected_ready_at is None and not view.stage.startswith(TAKING_LONGER)


def test_an_approved_drafts_final_is_expected_from_its_approval() -> None:
    approved = NOW + timedelta(days=2)
    view = with_expectation(
        out(GenerationStatus.PROCESSING, draft=out(GenerationStatus.DELIVERED), final_started_at=approved),
        90.0,
        approved + timedelta(seconds=60),
    )
    assert view.expected_ready_at == approved + timedelta(seconds=90)
    assert not view.stage.startswith(TAKING_LONGER)


def snapshot(rows: list[GenerationRow], **truncated: int | None) -> OpsSnapshot:
    return OpsSnapshot(
        window="1h",
        now=NOW,
        table=economics(rows),
        latency=latency_distribution(rows),
        failures=failures_over_time(rows, start=NOW - timedelta(hours=1), end=NOW, slots=12),
        flights=in_flight(rows, now=NOW, expected={}, job_ttl=timedelta(hours=2)),
        closed_truncated=truncated.get("closed"),
        running_truncated=truncated.get("running"),
    )


def test_the_page_escapes_what_it_shows_and_says_when_it_hit_the_limit() -> None:
    settings = Settings(environment=DEV_ENVIRONMENT, _env_file=None)
    rows = [
        GenerationRow(scenario="<b>x</b>", model="m", status="delivered", latency_ms=2000, closed_at=NOW),
        GenerationRow(
            id="gen-a/b", scenario="s", model="m", status="processing", started_at=NOW - timedelta(hours=3)
        ),
    ]
    page = render_page(snapshot(rows, closed=2), settings)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert 'href="http://127.0.0.1:8233/namespaces/default/workflows/gen-a%2Fb"' in page
    assert "Only the newest 2 ended generations were read" in page
    assert "running generations were read" not in page
    assert 'class="stuck"' in page  # 3 h running, past the 2 h job TTL
    assert page.count('class="bar" data-count="1"') == 1
