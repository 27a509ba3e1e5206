"""A generation's progress as a sequence of events, for the live stream
(`GET /v1/generations/{id}/events`): one event per change of status, stage or progress, each
with a sequence number, so `Last-Event-ID` names exactly what a client has seen and a resumed
stream sends what came after it. Kept in the workflow's memory (rebuilt by replay, never in
history); read with the `progress_events` query."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from .models import TERMINAL, GenerationStatus, GenerationView


class ProgressEvent(BaseModel):
    seq: int
    status: GenerationStatus
    stage: str
    progress: float
    # While processing: the pace so far (since the provider task was queued), extrapolated.
    eta_seconds: float | None = None
    at: datetime

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


_AT_THE_PROVIDER = frozenset({GenerationStatus.QUEUED, GenerationStatus.PROCESSING})


class ProgressLog:
    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []
        self._since: datetime | None = None  # when the provider task (queue included) started

    def record(self, view: GenerationView, now: datetime) -> None:
        last = self.events[-1] if self.events else None
        if last is not None and (last.status, last.stage, last.progress) == (
            view.status,
            view.stage,
            view.progress,
        ):
            return
        if view.status not in _AT_THE_PROVIDER:
            self._since = None
        elif self._since is None:
            self._since = now
        eta = None
        if self._since is not None and view.status is GenerationStatus.PROCESSING and 0 < view.progress < 100:
            elapsed = (now - self._since).total_seconds()
            eta = round(elapsed * (100 - view.progress) / view.progress, 1)
        self.events.append(
            ProgressEvent(
                seq=len(self.events) + 1,
                status=view.status,
                stage=view.stage,
                progress=view.progress,
                eta_seconds=eta,
                at=now,
            )
        )

    def after(self, seq: int) -> list[ProgressEvent]:
        """The events after `seq` (seq n is events[n - 1])."""
        return self.events[max(0, seq) :]
