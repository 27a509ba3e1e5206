"""The figures of workflows.report, shared by `starter.py report`, the ops page and expected
ready times: pure functions over visibility rows, so fast unit tests pin each definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflows.report import (
    ALL,
    GenerationRow,
    Shape,
    economics,
    expected_latencies,
    failures_over_time,
    in_flight,
    latency_distribution,
    parse_since,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SEEDANCE = "seedance-1.5-pro"


def row(status: str, **fields: object) -> GenerationRow:
    return GenerationRow.model_validate(
        {"scenario": "storyboard", "model": SEEDANCE, "status": status} | fields
    )


def test_cancelled_and_rejected_are_counted_apart_from_failures() -> None:
    rows = [
        row("delivered", attempts=1, credits=20, latency_ms=60_000),
        row("failed", failure_category="policy", attempts=1),
        row("cancelled", attempts=1, credits=5),
        row("cancelled", draft_rejected=True, attempts=1, credits=5),
    ]
    [line, total] = economics(rows)
    assert (line.generations, line.delivered, line.failed, line.cancelled, line.rejected) == (4, 1, 1, 1, 1)
    # Neither the cancel nor the rejection is a failure: 1 of the 2 decided ones was delivered.
    assert line.success_rate == pytest.approx(1 / 2)
    assert line.policy_failure_rate == pytest.approx(1 / 2)
    # But their credits are spent all the same: every credit over what was delivered.
    assert line.credits_per_success == pytest.approx(30)
    assert (total.scenario, total.model) == (ALL, ALL)


def test_figures_are_per_scenario_and_model_with_the_total_last() -> None:
    rows = [
        row("delivered", latency_ms=1000),
        row("delivered", model="veo-3.1-fast", latency_ms=5000),
        row("delivered", scenario="ambient", latency_ms=3000),
        row("processing"),  # still running: in no figure
    ]
    table = economics(rows)
    assert [(r.scenario, r.model) for r in table] == [
        ("ambient", SEEDANCE),
        ("storyboard", SEEDANCE),
        ("storyboard", "veo-3.1-fast"),
        (ALL, ALL),
    ]
    assert table[-1].generations == 3 and table[-1].p95_latency_s == pytest.approx(5.0)
    assert table[0].success_rate == 1.0


def test_a_window_of_only_cancellations_has_no_success_rate_rather_than_zero() -> None:
    [line, _] = economics([row("cancelled")])
    assert line.success_rate is None and line.policy_failure_rate is None and line.credits_per_success is None


def test_latency_distribution_counts_delivered_generations_only() -> None:
    rows = [
        row("delivered", latency_ms=4_000),
        row("delivered", latency_ms=5_000),  # an edge belongs to the bar below it
        row("delivered", latency_ms=150_000),
        row("delivered", latency_ms=10 * 3600 * 1000),
        row("failed", latency_ms=1_000),
    ]
    buckets = {b.label: b.count for b in latency_distribution(rows)}
    assert buckets["≤5s"] == 2 and buckets["≤3m"] == 1 and buckets[">2h"] == 1
    assert sum(buckets.values()) == 4


def test_failures_over_time_by_category_and_close_time() -> None:
    start = NOW - timedelta(hours=1)
    rows = [
        row("failed", failure_category="policy", closed_at=start + timedelta(minutes=1)),
        row("failed", failure_category="policy", closed_at=start + timedelta(minutes=4)),
        row("failed", failure_category="transient", closed_at=NOW - timedelta(seconds=1)),
        row("failed", failure_category="policy", closed_at=start - timedelta(seconds=1)),  # before
        row("delivered", closed_at=start + timedelta(minutes=2)),
    ]
    slots = failures_over_time(rows, start=start, end=NOW, slots=12)
    assert len(slots) == 12 and slots[1].start == start + timedelta(minutes=5)
    assert slots[0].failures == {"policy": 2}
    assert slots[-1].failures == {"transient": 1}
    assert sum(sum(s.failures.values()) for s in slots) == 3


def test_expected_latency_is_the_p95_of_its_shape_once_there_are_enough() -> None:
    shape = dict(duration=8, quality="720p")
    rows = [row("delivered", latency_ms=ms, **shape) for ms in (10_000, 20_000, 30_000)]
    rows.append(row("delivered", latency_ms=99_000, duration=4, quality="720p"))
    assert expected_latencies(rows, min_samples=3) == {(SEEDANCE, 8, "720p"): 30.0}
    assert expected_latencies(rows, min_samples=4) == {}


def test_in_flight_flags_slow_and_stuck_but_never_a_draft_awaiting_approval() -> None:
    expected: dict[Shape, float] = {(SEEDANCE, 8, "720p"): 60.0}
    rows = [
        row("processing", id="fresh", duration=8, quality="720p", started_at=NOW - timedelta(seconds=30)),
        row("processing", id="slow", duration=8, quality="720p", started_at=NOW - timedelta(seconds=90)),
        row("processing", id="stuck", duration=8, quality="720p", started_at=NOW - timedelta(hours=3)),
        row("awaiting_approval", id="person", duration=8, quality="720p", started_at=NOW - timedelta(days=3)),
        row("delivered", id="done", started_at=NOW - timedelta(hours=9)),
    ]
    flights = {f.row.id: f for f in in_flight(rows, now=NOW, expected=expected, job_ttl=timedelta(hours=2))}
    assert set(flights) == {"fresh", "slow", "stuck", "person"}
    assert (flights["fresh"].slow, flights["fresh"].stuck) == (False, False)
    assert (flights["slow"].slow, flights["slow"].stuck) == (True, False)
    assert flights["stuck"].stuck
    assert (flights["person"].slow, flights["person"].stuck) == (False, False)


def test_an_approved_drafts_final_is_timed_from_its_approval() -> None:
    """Its job TTL restarts at approval: three days after submission, ten minutes after approval,
    it is neither stuck nor slow (before VideoFinalStartedAt it was flagged stuck)."""
    shape = dict(duration=8, quality="720p")
    approved = row(
        "processing",
        id="approved",
        started_at=NOW - timedelta(days=3),
        final_started_at=NOW - timedelta(seconds=30),
        **shape,
    )
    late = approved.model_copy(update={"id": "late", "final_started_at": NOW - timedelta(hours=3)})
    flights = {
        f.row.id: f
        for f in in_flight(
            [approved, late], now=NOW, expected={(SEEDANCE, 8, "720p"): 60.0}, job_ttl=timedelta(hours=2)
        )
    }
    assert flights["approved"].age_s == timedelta(days=3).total_seconds()  # what "running for" shows
    assert (flights["approved"].slow, flights["approved"].stuck) == (False, False)
    assert (flights["late"].slow, flights["late"].stuck) == (True, True)


@pytest.mark.parametrize(
    ("text", "since"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-11-29T08:00", datetime(2026, 11, 29, 8, 0, tzinfo=UTC)),
        ("2026-11-29T08:00+01:00", datetime(2026, 11, 29, 7, 0, tzinfo=UTC)),
    ],
)
def test_since_is_a_span_or_a_time(text: str, since: datetime) -> None:
    assert parse_since(text, NOW) == since


@pytest.mark.parametrize("text", ["yesterday", "0h", "-3d", "h"])
def test_a_bad_since_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="span"):
        parse_since(text, NOW)
