"""Where a generation's webhook events go, decided when it starts (GenerationInput.webhooks):
no plan, no notification commands in its history."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

NOTIFY_URL_ENDPOINT = "notify_url"  # the endpoint id of a request's own `notify_url`


class EventType(StrEnum):
    DELIVERED = "generation.delivered"
    FAILED = "generation.failed"
    CANCELLED = "generation.cancelled"
    AWAITING_APPROVAL = "generation.awaiting_approval"
    DRAFT_READY = "generation.draft_ready"


class PlannedTarget(BaseModel):
    """Where one generation's events go, decided when it starts: a configured endpoint (by id:
    its URL and secrets are read at each attempt, so edits, rotations and a 410 apply to
    retries) or the request's `notify_url`."""

    endpoint_id: str
    events: list[EventType]
    url: str | None = None  # the notify_url; None for a configured endpoint


class WebhookPlan(BaseModel):
    targets: list[PlannedTarget] = Field(default_factory=list)

    def targets_for(self, event: EventType) -> list[PlannedTarget]:
        return [t for t in self.targets if event in t.events]
