"""Webhooks' contract between the API, the generation workflow, the delivery and registry
workflows and the delivery activity: event types, the retry schedule, the plan a generation
starts with, delivery attempts, and the endpoint registry's state. Values only (workflow code
imports it)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from .models import GenerationStatus, GenerationView
from .webhook_plan import NOTIFY_URL_ENDPOINT, EventType, PlannedTarget, WebhookPlan

__all__ = ["NOTIFY_URL_ENDPOINT", "EventType", "PlannedTarget", "WebhookPlan"]


# The events a status change raises: a delivered draft is ready and awaits approval at once.
EVENTS_OF_STATUS: dict[GenerationStatus, tuple[EventType, ...]] = {
    GenerationStatus.DELIVERED: (EventType.DELIVERED,),
    GenerationStatus.FAILED: (EventType.FAILED,),
    GenerationStatus.CANCELLED: (EventType.CANCELLED,),
    GenerationStatus.AWAITING_APPROVAL: (EventType.DRAFT_READY, EventType.AWAITING_APPROVAL),
}

# Standard Webhooks' recommended schedule: the wait before each attempt (immediately, 5 s,
# 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), about 27.5 h in all.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
ATTEMPT_TIMEOUT = timedelta(seconds=10)  # the receiver's whole answer, connect to last byte read
# The activity's own bound: the request's, plus resolving the endpoint and signing.
ATTEMPT_ACTIVITY_TIMEOUT = ATTEMPT_TIMEOUT + timedelta(seconds=20)
MAX_RESPONSE_BYTES = 4096  # of a receiver's answer kept (and read at all)


def webhook_id(generation_id: str, event: EventType) -> str:
    """`webhook-id`: one per (generation, event), whichever endpoint and attempt carries it,
    so a receiver dedupes retries and a replayed history sends the same id."""
    return "msg_" + hashlib.sha256(f"{generation_id}\x00{event.value}".encode()).hexdigest()[:32]


def delivery_workflow_id(generation_id: str, event: EventType) -> str:
    return f"{generation_id}/webhook/{event.value}"


def registry_workflow_id(tenant: str) -> str:
    return f"webhook-endpoints-{tenant}"


class DeliveryInput(BaseModel):
    generation_id: str
    tenant: str
    event: EventType
    webhook_id: str
    view: GenerationView  # the generation as it stood at the event (URLs are signed afresh per attempt)
    targets: list[PlannedTarget]
    schedule_seconds: list[float] = Field(default_factory=lambda: [d.total_seconds() for d in RETRY_SCHEDULE])


class AttemptInput(BaseModel):
    tenant: str
    generation_id: str
    event: EventType
    webhook_id: str
    target: PlannedTarget
    attempt: int
    view: GenerationView


class AttemptOutcome(StrEnum):
    DELIVERED = "delivered"  # 2xx
    FAILED = "failed"  # anything else: retried by the schedule
    GONE = "gone"  # 410: the endpoint is disabled, no more attempts
    REFUSED = "refused"  # the destination fails netguard (private, loopback, metadata, scheme)
    DISABLED = "disabled"  # the endpoint was disabled (or removed) before this attempt


FINAL_OUTCOMES = frozenset(
    {AttemptOutcome.DELIVERED, AttemptOutcome.GONE, AttemptOutcome.REFUSED, AttemptOutcome.DISABLED}
)


class AttemptResult(BaseModel):
    attempt: int
    outcome: AttemptOutcome
    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None
    response_excerpt: str | None = None  # at most MAX_RESPONSE_BYTES of the answer


class TargetState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    GAVE_UP = "gave_up"
    ENDPOINT_DISABLED = "endpoint_disabled"
    REFUSED = "refused"


STATE_OF_FINAL_OUTCOME = {
    AttemptOutcome.DELIVERED: TargetState.DELIVERED,
    AttemptOutcome.GONE: TargetState.ENDPOINT_DISABLED,
    AttemptOutcome.DISABLED: TargetState.ENDPOINT_DISABLED,
    AttemptOutcome.REFUSED: TargetState.REFUSED,
}


class TargetDeliveries(BaseModel):
    endpoint_id: str
    state: TargetState = TargetState.PENDING
    attempts: list[AttemptResult] = Field(default_factory=list)
    next_attempt_at: datetime | None = None


class DeliveryRecord(BaseModel):
    """One event's deliveries: what `GET /v1/generations/{id}/deliveries` lists."""

    event: EventType
    webhook_id: str
    targets: list[TargetDeliveries] = Field(default_factory=list)


# ---- the endpoint registry ---------------------------------------------------------------


class EndpointRecord(BaseModel):
    """An endpoint made through the admin API. No secret: its secrets are derived from
    WEBHOOK_SIGNING_KEY and `version` (and `previous_version` until `previous_until`)."""

    id: str
    url: str
    events: list[EventType]
    version: int = 1
    previous_version: int | None = None
    previous_until: datetime | None = None
    created_at: datetime | None = None


class Disabled(BaseModel):
    reason: str
    at: datetime


class RegistryState(BaseModel):
    """A tenant's admin-made endpoints, and which endpoints (of either kind) are disabled."""

    endpoints: dict[str, EndpointRecord] = Field(default_factory=dict)
    disabled: dict[str, Disabled] = Field(default_factory=dict)


class SetDisabled(BaseModel):
    endpoint_id: str
    disabled: bool
    reason: str = ""


class Rotate(BaseModel):
    endpoint_id: str
    grace_seconds: float
