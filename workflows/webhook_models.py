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
# The immediate attempt is made by the generation itself, a local activity in its workflow task,
# which stays open meanwhile: the generation's close, its final search-attribute upsert and an API
# read of it (a query) wait for that attempt, at most this long. A receiver slower than that gets
# the same event again at the schedule's 5 s step, with the whole ATTEMPT_TIMEOUT.
FIRST_ATTEMPT_TIMEOUT = timedelta(seconds=3)
# The local activity's own bound: the attempt's, plus resolving the endpoint and signing.
FIRST_ATTEMPT_ACTIVITY_TIMEOUT = FIRST_ATTEMPT_TIMEOUT + timedelta(seconds=1)
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
    # The attempts the generation made itself (its immediate one at each target): the delivery
    # workflow goes on from the schedule's next step, for the targets they did not settle.
    first: DeliveryRecord | None = None


class AttemptInput(BaseModel):
    tenant: str
    generation_id: str
    event: EventType
    webhook_id: str
    target: PlannedTarget
    attempt: int
    view: GenerationView
    # The receiver's whole answer (ATTEMPT_TIMEOUT unless said: the generation's own attempt is
    # bounded by FIRST_ATTEMPT_TIMEOUT).
    timeout_seconds: float = ATTEMPT_TIMEOUT.total_seconds()


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

    def record(self, result: AttemptResult) -> bool:
        """Adds an attempt; True when its outcome ends this target's deliveries."""
        self.attempts.append(result)
        if result.outcome in FINAL_OUTCOMES:
            self.state = STATE_OF_FINAL_OUTCOME[result.outcome]
            return True
        return False


class DeliveryRecord(BaseModel):
    """One event's deliveries: what `GET /v1/generations/{id}/deliveries` lists."""

    event: EventType
    webhook_id: str
    targets: list[TargetDeliveries] = Field(default_factory=list)

    @property
    def settled(self) -> bool:
        """Every target's deliveries ended (delivered, disabled, refused or given up)."""
        return all(t.state is not TargetState.PENDING for t in self.targets)


DeliveryInput.model_rebuild()  # its `first` is a DeliveryRecord


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
