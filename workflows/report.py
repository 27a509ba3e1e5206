"""Unit economics from finished generations: "cost per successful output, not per attempt".

Pure functions over rows read from Temporal visibility (search attributes), so the same
numbers come out of `starter.py report`, the API and the tests.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from pydantic import BaseModel

from .models import FailureCategory, GenerationStatus


class GenerationRow(BaseModel):
    scenario: str
    status: str
    failure_category: str | None = None
    attempts: int = 0
    credits: float = 0.0
    latency_ms: int | None = None


class ScenarioEconomics(BaseModel):
    scenario: str
    generations: int
    delivered: int
    success_rate: float
    attempts_per_success: float | None
    policy_failure_rate: float
    retry_rate: float  # share of provider tasks that were retries
    p50_latency_s: float | None
    p95_latency_s: float | None
    credits_total: float
    credits_per_success: float | None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def economics(rows: Iterable[GenerationRow]) -> list[ScenarioEconomics]:
    groups: dict[str, list[GenerationRow]] = defaultdict(list)
    for row in rows:
        if row.status in (GenerationStatus.DELIVERED, GenerationStatus.FAILED, GenerationStatus.CANCELLED):
            groups[row.scenario].append(row)
            groups["ALL"].append(row)
    result = []
    for scenario in sorted(groups, key=lambda s: (s == "ALL", s)):
        group = groups[scenario]
        delivered = [r for r in group if r.status == GenerationStatus.DELIVERED]
        attempts = sum(r.attempts for r in group)
        credits = sum(r.credits for r in group)
        latencies = [r.latency_ms / 1000 for r in delivered if r.latency_ms is not None]
        policy = sum(1 for r in group if r.failure_category == FailureCategory.POLICY)
        result.append(
            ScenarioEconomics(
                scenario=scenario,
                generations=len(group),
                delivered=len(delivered),
                success_rate=len(delivered) / len(group),
                attempts_per_success=attempts / len(delivered) if delivered else None,
                policy_failure_rate=policy / len(group),
                retry_rate=(attempts - sum(1 for r in group if r.attempts)) / attempts if attempts else 0.0,
                p50_latency_s=percentile(latencies, 50),
                p95_latency_s=percentile(latencies, 95),
                credits_total=round(credits, 4),
                credits_per_success=round(credits / len(delivered), 4) if delivered else None,
            )
        )
    return result
