"""Unit economics and operability figures from generations: "cost per successful output, not
per attempt".

Pure functions over rows read from Temporal visibility (search attributes; `control.read_generations`),
so the same numbers come out of `starter.py report`, the API's ops page and expected ready times,
and the tests: each figure is defined once, here.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

from .models import FailureCategory, GenerationStatus

ALL = "ALL"

# The ops page's windows, and how many slots its failures-over-time chart divides each into.
WINDOWS: dict[str, tuple[timedelta, int]] = {
    "1h": (timedelta(hours=1), 12),
    "24h": (timedelta(hours=24), 24),
    "7d": (timedelta(days=7), 28),
}
_SPAN_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `24h`, `7d` (that long before `now`) or an ISO 8601 time (UTC when it names no
    zone). Raises ValueError saying what is accepted."""
    text = text.strip()
    unit = _SPAN_UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit() and int(text[:-1]) > 0:
        return now - unit * int(text[:-1])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a span (30m, 24h, 7d) nor an ISO 8601 time (2026-01-31T12:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Outcome(StrEnum):
    """How a generation ended, for counting: a cancel or a rejected draft is the user's choice,
    not a failure, so neither lowers the success rate."""

    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class GenerationRow(BaseModel):
    id: str = ""
    scenario: str
    model: str = ""
    status: str
    failure_category: str | None = None
    draft_rejected: bool = False
    attempts: int = 0
    credits: float = 0.0
    latency_ms: int | None = None  # submit to end, time awaiting approval excluded
    duration: int | None = None
    quality: str | None = None
    started_at: datetime | None = None
    final_started_at: datetime | None = None  # an approved draft's final: when it started
    closed_at: datetime | None = None

    @property
    def outcome(self) -> Outcome | None:
        """None while the generation runs."""
        if self.status == GenerationStatus.DELIVERED:
            return Outcome.DELIVERED
        if self.status == GenerationStatus.FAILED:
            return Outcome.FAILED
        if self.status == GenerationStatus.CANCELLED:
            return Outcome.REJECTED if self.draft_rejected else Outcome.CANCELLED
        return None


class ScenarioEconomics(BaseModel):
    scenario: str
    model: str
    generations: int  # every ended generation: delivered, failed, cancelled, rejected
    delivered: int
    failed: int
    cancelled: int
    rejected: int
    success_rate: float | None  # delivered / (delivered + failed)
    attempts_per_success: float | None
    policy_failure_rate: float | None  # policy failures / (delivered + failed)
    retry_rate: float  # share of provider tasks that were retries
    p50_latency_s: float | None
    p95_latency_s: float | None
    credits_total: float
    credits_per_success: float | None  # every credit of the group / delivered


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def _latencies_s(rows: Iterable[GenerationRow]) -> list[float]:
    return [r.latency_ms / 1000 for r in rows if r.outcome is Outcome.DELIVERED and r.latency_ms is not None]


def _figures(scenario: str, model: str, group: list[GenerationRow]) -> ScenarioEconomics:
    counts = Counter(r.outcome for r in group)
    delivered, failed = counts[Outcome.DELIVERED], counts[Outcome.FAILED]
    decided = delivered + failed
    attempts = sum(r.attempts for r in group)
    credits = sum(r.credits for r in group)
    latencies = _latencies_s(group)
    policy = sum(
        1 for r in group if r.outcome is Outcome.FAILED and r.failure_category == FailureCategory.POLICY
    )
    return ScenarioEconomics(
        scenario=scenario,
        model=model,
        generations=len(group),
        delivered=delivered,
        failed=failed,
        cancelled=counts[Outcome.CANCELLED],
        rejected=counts[Outcome.REJECTED],
        success_rate=delivered / decided if decided else None,
        attempts_per_success=attempts / delivered if delivered else None,
        policy_failure_rate=policy / decided if decided else None,
        retry_rate=(attempts - sum(1 for r in group if r.attempts)) / attempts if attempts else 0.0,
        p50_latency_s=percentile(latencies, 50),
        p95_latency_s=percentile(latencies, 95),
        credits_total=round(credits, 4),
        credits_per_success=round(credits / delivered, 4) if delivered else None,
    )


def economics(rows: Iterable[GenerationRow]) -> list[ScenarioEconomics]:
    """One line per scenario and model, then the total (scenario and model `ALL`)."""
    groups: dict[tuple[str, str], list[GenerationRow]] = defaultdict(list)
    for row in rows:
        if row.outcome is not None:
            groups[(row.scenario, row.model)].append(row)
            groups[(ALL, ALL)].append(row)
    return [_figures(*key, groups[key]) for key in sorted(groups, key=lambda k: (k[0] == ALL, k))]


# ---- the ops page's charts --------------------------------------------------------------------

# Upper edges (seconds) of the latency distribution's bars; the last bar is "beyond". From a fast
# draft to the job TTL (2 h), finer where real generations land (1-5 minutes).
LATENCY_EDGES_S: tuple[float, ...] = (5, 15, 30, 60, 120, 180, 300, 600, 1800, 7200)


class Bucket(BaseModel):
    label: str
    count: int


def latency_distribution(rows: Iterable[GenerationRow]) -> list[Bucket]:
    """Delivered generations by latency, one bucket per LATENCY_EDGES_S bar."""
    counts = [0] * (len(LATENCY_EDGES_S) + 1)
    for seconds in _latencies_s(rows):
        counts[
            next((i for i, edge in enumerate(LATENCY_EDGES_S) if seconds <= edge), len(LATENCY_EDGES_S))
        ] += 1
    labels = [f"≤{span_label(edge)}" for edge in LATENCY_EDGES_S] + [f">{span_label(LATENCY_EDGES_S[-1])}"]
    return [Bucket(label=label, count=count) for label, count in zip(labels, counts, strict=True)]


def span_label(seconds: float) -> str:
    """`45s`, `90m`, `2.5h`: a span as the charts and tables print it."""
    for unit, size, below in (("s", 1, 120), ("m", 60, 7200)):
        if seconds < below:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds / 3600:.3g}h"


class TimeSlot(BaseModel):
    start: datetime
    failures: dict[str, int]  # failure category -> count


def failures_over_time(
    rows: Iterable[GenerationRow], *, start: datetime, end: datetime, slots: int
) -> list[TimeSlot]:
    """Failed generations by category, in `slots` equal slices of [start, end) by close time."""
    width = (end - start) / slots
    result = [TimeSlot(start=start + width * i, failures={}) for i in range(slots)]
    for row in rows:
        if row.outcome is not Outcome.FAILED or row.closed_at is None or not start <= row.closed_at < end:
            continue
        slot = result[min(slots - 1, int((row.closed_at - start) / width))]
        category = row.failure_category or "unknown"
        slot.failures[category] = slot.failures.get(category, 0) + 1
    return result


# ---- expectations: "degrade gracefully when p95 spikes" ---------------------------------------

Shape = tuple[str, int | None, str | None]  # model, duration, quality


def shape_of(row: GenerationRow) -> Shape:
    return (row.model, row.duration, row.quality)


def expected_latencies(rows: Iterable[GenerationRow], *, min_samples: int = 1) -> dict[Shape, float]:
    """The p95 latency (seconds) of delivered generations per model, duration and quality, for
    shapes with at least `min_samples` of them: what a generation of that shape should take."""
    by_shape: dict[Shape, list[GenerationRow]] = defaultdict(list)
    for row in rows:
        by_shape[shape_of(row)].append(row)
    result = {}
    for shape, group in by_shape.items():
        latencies = _latencies_s(group)
        p95 = percentile(latencies, 95)
        if p95 is not None and len(latencies) >= min_samples:
            result[shape] = p95
    return result


class InFlight(BaseModel):
    row: GenerationRow
    age_s: float  # since it was submitted
    working_s: float  # since its final started: the submission, or an approved draft's approval
    expected_s: float | None  # the p95 of its shape, when known
    stuck: bool  # still running past its job TTL: the workflow should have ended it

    @property
    def slow(self) -> bool:
        return self.expected_s is not None and self.working_s > self.expected_s


def in_flight(
    rows: Sequence[GenerationRow], *, now: datetime, expected: dict[Shape, float], job_ttl: timedelta
) -> list[InFlight]:
    """Running generations, oldest first. Awaiting approval is a person's time, never stuck, and
    an approved draft's final is timed from the approval (where its job TTL restarts)."""
    result = []
    for row in rows:
        if row.outcome is not None or row.started_at is None:
            continue
        age = (now - row.started_at).total_seconds()
        working = (now - (row.final_started_at or row.started_at)).total_seconds()
        waiting = row.status == GenerationStatus.AWAITING_APPROVAL
        result.append(
            InFlight(
                row=row,
                age_s=age,
                working_s=working,
                expected_s=None if waiting else expected.get(shape_of(row)),
                stuck=not waiting and working > job_ttl.total_seconds(),
            )
        )
    return sorted(result, key=lambda f: -f.age_s)
