"""Webhook delivery metrics, through Temporal's meter (the worker's Prometheus endpoint,
`python worker.py --metrics-bind`): attempts by outcome, their latency, and give-ups (recorded
by the delivery workflow when a target's whole schedule failed)."""

from __future__ import annotations

from temporalio.common import MetricMeter

from workflows.webhook_models import AttemptResult, EventType

ATTEMPTS = "webhook_attempts"
LATENCY = "webhook_attempt_latency"
GIVE_UPS = "webhook_give_ups"


def record_attempt(meter: MetricMeter, event: EventType, result: AttemptResult) -> None:
    """Success (`delivered`) and failure (`failed`, `gone`, `refused`) counts; latency of the
    attempts that reached the receiver."""
    labels = {"event": event.value, "outcome": result.outcome.value}
    meter.create_counter(ATTEMPTS, "webhook delivery attempts by event and outcome").add(1, labels)
    if result.duration_ms is not None:
        meter.create_histogram(LATENCY, "webhook attempt duration", unit="ms").record(
            result.duration_ms, labels
        )
