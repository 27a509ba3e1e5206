"""The worker's Prometheus metrics: every name, label and histogram bucket, defined once.

The workflow records through `workflow.metric_meter()` (replay-safe: nothing is recorded while
a history replays, and no metric adds an event to it), the activities through
`activity.metric_meter()`; `worker.worker_runtime` exports them with the buckets below. The
rules in deploy/prometheus/ and the dashboards in deploy/grafana/ read these names
(tests/test_prometheus.py checks them against a real scrape).

Cardinality is bounded: labels take values from enums and the model list, never ids or prompt
text. `tenant` is the one label that grows with the customer base: only the generation count
and the credits carry it, and `METRICS_TENANT_LABEL=false` records it as `-` instead (`GenerationInput.metrics_tenant`).

Counters are named with their `_total` (the SDK's exporter adds no suffix, so its own
`temporal_*` counters keep the names Temporal's Core-SDK dashboard expects); durations are
float seconds (the SDK's own histograms stay in milliseconds, as that dashboard expects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from temporalio.common import MetricMeter

GENERATIONS = "video_generations_total"
LATENCY = "video_generation_latency_seconds"
PROVIDER_TASKS = "video_generation_provider_tasks_total"
RETRIES = "video_generation_retries_total"
CREDITS = "video_generation_credits"
ORPHANS = "video_generation_orphans_total"
TASKS_FINALISED = "video_provider_tasks_finalised_total"
TASKS_CREATED = "video_provider_tasks_created_total"
REHOST_BYTES = "video_rehost_bytes_total"
REHOST_SECONDS = "video_rehost_seconds"

# Submit -> delivered: 1 s .. 2 h (a real generation takes 1-5 minutes; the job TTL is 2 h).
LATENCY_BUCKETS: tuple[float, ...] = (
    1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 150, 180, 240, 300, 420, 600, 900, 1200, 1800,
    2700, 3600, 5400, 7200,
)  # fmt: skip
CREDIT_BUCKETS: tuple[float, ...] = (1, 5, 10, 25, 50, 100, 250, 500, 1000)
REHOST_SECONDS_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
HISTOGRAM_BUCKETS: Mapping[str, Sequence[float]] = {
    LATENCY: LATENCY_BUCKETS,
    CREDITS: CREDIT_BUCKETS,
    REHOST_SECONDS: REHOST_SECONDS_BUCKETS,
}

# What `tenant` reads when METRICS_TENANT_LABEL is off.
NO_TENANT = "-"


class Phase(StrEnum):
    """Where a generation is: its draft, the wait for the user's decision, its final."""

    DRAFT = "draft"
    APPROVAL = "approval"
    FINAL = "final"


class FinalisedVia(StrEnum):
    """How the workflow learned a provider task's terminal state: a read after a callback woke
    it, a read after its poll timer fired, or the create's own answer."""

    CALLBACK = "callback"
    POLL = "poll"
    CREATE = "create"


@dataclass
class Credits:
    """A generation's provider credits, summed over its tasks."""

    charged: float = 0.0
    reserved: float = 0.0
    refunded: float = 0.0


@dataclass(frozen=True)
class GenerationEnd:
    """Everything recorded when a generation ends."""

    tenant: str
    scenario: str
    model: str
    status: str
    category: str  # "none" unless failed
    phase: Phase  # where it ended
    latency_seconds: float  # submit -> end, minus the time spent awaiting approval
    provider_tasks: int
    retries: int  # provider tasks created again after a transient failure
    credits: Credits
    orphans_adopted: int
    orphans_recorded: int  # tasks that called back but were never adopted (maybe billed)


def record_generation_end(meter: MetricMeter, end: GenerationEnd) -> None:
    kind = {"scenario": end.scenario, "model": end.model}
    outcome = {**kind, "status": end.status}
    meter.create_counter(GENERATIONS, "generations ended, by outcome").add(
        1, {**outcome, "tenant": end.tenant, "category": end.category, "phase": end.phase.value}
    )
    record_latency(meter, kind, end.phase, end.status, end.latency_seconds)
    meter.create_counter(PROVIDER_TASKS, "provider tasks (attempts) of ended generations").add(
        end.provider_tasks, outcome
    )
    if end.retries:
        meter.create_counter(RETRIES, "provider tasks created again after a transient failure").add(
            end.retries, outcome
        )
    credits = meter.create_histogram_float(CREDITS, "provider credits per ended generation, by kind")
    for name, amount in (
        ("charged", end.credits.charged),
        ("reserved", end.credits.reserved),
        ("refunded", end.credits.refunded),
    ):
        credits.record(amount, {**outcome, "tenant": end.tenant, "kind": name})
    orphans = meter.create_counter(ORPHANS, "provider tasks found by their callback alone")
    for name, count in (("adopted", end.orphans_adopted), ("recorded", end.orphans_recorded)):
        if count:
            orphans.add(count, {**kind, "outcome": name})


def record_latency(
    meter: MetricMeter, kind: Mapping[str, str], phase: Phase, status: str, seconds: float
) -> None:
    meter.create_histogram_float(LATENCY, "submit to end, excluding time awaiting approval", "s").record(
        max(0.0, seconds), {**kind, "phase": phase.value, "status": status}
    )


def record_task_finalised(meter: MetricMeter, via: FinalisedVia) -> None:
    meter.create_counter(
        TASKS_FINALISED, "provider tasks whose terminal state was read, by what woke the read"
    ).add(1, {"via": via.value})


def record_task_created(meter: MetricMeter, *, callbacks: bool) -> None:
    meter.create_counter(TASKS_CREATED, "provider tasks created, with or without a callback URL").add(
        1, {"callbacks": "enabled" if callbacks else "disabled"}
    )


def record_rehost(meter: MetricMeter, model: str, phase: str, size_bytes: int, seconds: float) -> None:
    labels = {"model": model, "phase": phase}
    meter.create_counter(REHOST_BYTES, "bytes re-hosted into our store", "By").add(size_bytes, labels)
    meter.create_histogram_float(REHOST_SECONDS, "one successful re-host attempt", "s").record(
        seconds, labels
    )
