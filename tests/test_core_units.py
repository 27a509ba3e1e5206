"""Fast unit tests of the pure logic under the workflow: ids, tokens, hashes, economics."""

from __future__ import annotations

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from devstack.testbed import rehost_job
from gptimage2 import Mode, VideoParams
from workflows.callback_token import callback_url, mint_callback_token, verify_callback_token
from workflows.ids import generation_workflow_id, tenant_of
from workflows.models import GenerationSpec, RehostInput
from workflows.report import GenerationRow, economics, percentile


def test_same_intent_same_workflow_id() -> None:
    assert generation_workflow_id("acme", "u1", "k1") == generation_workflow_id("acme", "u1", "k1")


@pytest.mark.parametrize(
    ("other"),
    [("acme", "u2", "k1"), ("acme", "u1", "k2"), ("demo", "u1", "k1"), ("acme", "u1\x00k", "1")],
)
def test_any_part_of_the_intent_changes_the_id(other: tuple[str, str, str]) -> None:
    assert generation_workflow_id(*other) != generation_workflow_id("acme", "u1", "k1")


def test_workflow_id_carries_tenant_but_no_user_content() -> None:
    workflow_id = generation_workflow_id("acme", "alice@example.com", "click-42")
    assert tenant_of(workflow_id) == "acme"
    assert "alice" not in workflow_id and "click" not in workflow_id
    assert tenant_of("not-a-generation") is None


@pytest.mark.parametrize(
    ("tenant", "user", "key"), [("ACME", "u", "k"), ("", "u", "k"), ("a", "", "k"), ("a", "u", "")]
)
def test_bad_id_parts_are_refused(tenant: str, user: str, key: str) -> None:
    with pytest.raises(ValueError):
        generation_workflow_id(tenant, user, key)


def test_callback_token_round_trip_and_forgery() -> None:
    token = mint_callback_token("s3cret", "gen-acme-abc")
    assert verify_callback_token("s3cret", token) == "gen-acme-abc"
    assert verify_callback_token("other-secret", token) is None
    assert verify_callback_token("s3cret", "gen-acme-abd" + token[len("gen-acme-abc") :]) is None
    assert verify_callback_token("s3cret", token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert verify_callback_token("s3cret", "garbage") is None
    assert callback_url("https://h.example/", "s3cret", "gen-x").startswith(
        "https://h.example/callbacks/gptimage2/gen-x."
    )


def test_request_hash_covers_the_body() -> None:
    base = GenerationSpec(user_id="u", params=VideoParams(prompt="a cat"))
    assert (
        base.request_hash() == GenerationSpec(user_id="u", params=VideoParams(prompt="a cat")).request_hash()
    )
    for change in ({"duration": 6}, {"prompt": "a dog"}):
        changed = base.model_copy(update={"params": base.params.model_copy(update=change)})
        assert base.request_hash() != changed.request_hash()
    assert base.request_hash() != base.model_copy(update={"user_id": "v"}).request_hash()


@pytest.mark.parametrize(
    ("urls", "mode"),
    [
        ([], Mode.TEXT_TO_VIDEO),
        (["https://a/x.png"], Mode.IMAGE_TO_VIDEO),
        (["https://a/1.png", "https://a/2.png"], Mode.FIRST_LAST_FRAME),
    ],
)
def test_mode_follows_image_count(urls: list[str], mode: Mode) -> None:
    assert GenerationSpec(user_id="u", params=VideoParams(prompt="p", image_urls=urls)).mode is mode


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


def test_cost_per_successful_output_counts_failed_attempts() -> None:
    rows = [
        GenerationRow(scenario="storyboard", status="delivered", attempts=1, credits=20, latency_ms=1000),
        GenerationRow(scenario="storyboard", status="delivered", attempts=3, credits=20, latency_ms=3000),
        GenerationRow(
            scenario="storyboard", status="failed", failure_category="policy", attempts=1, credits=0
        ),
        GenerationRow(
            scenario="talking_head", status="failed", failure_category="transient", attempts=3, credits=0
        ),
        GenerationRow(scenario="talking_head", status="processing", attempts=1),  # still running: not counted
    ]
    table = {row.scenario: row for row in economics(rows)}
    story = table["storyboard"]
    assert story.generations == 3 and story.delivered == 2
    assert story.attempts_per_success == pytest.approx(5 / 2)
    assert story.policy_failure_rate == pytest.approx(1 / 3)
    assert story.retry_rate == pytest.approx(2 / 5)
    assert story.credits_per_success == pytest.approx(20)
    assert story.p95_latency_s == pytest.approx(3.0)
    assert table["talking_head"].credits_per_success is None
    assert table["ALL"].generations == 4


def test_a_rehost_queued_with_the_old_outcome_category_still_decodes() -> None:
    """Re-hosts scheduled before `outcome_category` left RehostInput (it was always "passed")
    carry the field; a new worker must still read them."""
    job = rehost_job("https://results.invalid/v.mp4")
    old = {**job.model_dump(mode="json"), "outcome_category": "passed"}
    converter = pydantic_data_converter.payload_converter
    [decoded] = converter.from_payloads(converter.to_payloads([old]), [RehostInput])
    assert decoded == job
