"""The simulator's clock, counters and tasks.

A task's whole life is decided when it is created (queue time, generation time, outcome), so its
status at any instant is computed from the simulator clock rather than stepped by a loop: a GET
is always consistent with the clock, and advancing the clock moves every task at once.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field, fields
from typing import Any

from gptimage2 import LINK_TTL_SECONDS, CreateVideoRequest, TaskStatus
from gptimage2._classify import CALLER_CODES, POLICY_CODES

from .directives import Directives

POLICY_CODE = "content_policy_violation"
CANCELLED_CODE = "request_cancelled"
# Moderation "can arrive late" (docs/provider-contract.md): a policy failure lands at about 60 % of generation.
POLICY_FRACTION = 0.6

ERROR_MESSAGES = {
    POLICY_CODE: "The request was rejected by content moderation.",
    CANCELLED_CODE: "The task was cancelled at the caller's request.",
    "generation_timeout": "Generation did not finish in time.",
    "quota_exceeded": "Upstream quota exceeded; try again later.",
    "resource_exhausted": "Upstream capacity exhausted; try again later.",
    "generation_failed_no_content": "Generation finished without producing a video.",
    "service_error": "The generation service failed.",
    "service_unavailable": "The generation service is temporarily unavailable.",
    "unknown_error": "Generation failed for an unknown reason.",
}


def error_type(code: str) -> str:
    if code in POLICY_CODES:
        return "content_policy_error"
    if code in CALLER_CODES:
        return "invalid_request_error"
    return "server_error"


def number(value: float) -> int | float:
    """Credits as JSON: 50 rather than 50.0 when whole, as the contract example shows."""
    return int(value) if float(value).is_integer() else round(value, 4)


class SimClock:
    """Unix time as the simulator sees it: real elapsed time x `time_scale`, plus advances."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self._origin_unix = time.time()
        self._origin_mono = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        return self._origin_unix + (time.monotonic() - self._origin_mono) * self.time_scale + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def real_seconds_until(self, sim_time: float) -> float:
        return max(0.0, (sim_time - self.now()) / self.time_scale)


@dataclass
class Counters:
    """`GET /_sim/stats`. Credits: reserved = charged + refunded + held by running tasks."""

    tasks_created: int = 0
    creates_rejected: int = 0  # refused (auth, size, validation, injected error) with no task made
    credits_reserved: float = 0.0
    credits_charged: float = 0.0
    credits_refunded: float = 0.0
    gets_served: int = 0
    cancels: int = 0
    callbacks_sent: int = 0  # every POST attempt, first tries and retries alike
    callbacks_delivered: int = 0  # attempts answered 2xx
    callbacks_failed: int = 0  # attempts answered non-2xx, timed out or refused
    callbacks_retried: int = 0  # attempts after the first for one delivery
    callbacks_given_up: int = 0  # deliveries that exhausted 1 + 3 attempts
    callbacks_dropped: int = 0  # deliveries never attempted (fault injection)
    downloads_served: int = 0
    download_bytes_served: int = 0  # body bytes written to result downloads, all tasks
    http_faults_injected: int = 0
    responses_lost: int = 0

    def as_dict(self) -> dict[str, int | float]:
        return {f.name: number(getattr(self, f.name)) for f in fields(self)}


def credits_for(params: CreateVideoRequest) -> float:
    """The model's billing rule (gptimage2.profiles). Seedance: 5 (720p) or 3 (480p) a second,
    plus 1.25 a second with audio, so an 8 s 720p clip with audio reserves 50, as in the
    contract's example."""
    return params.profile.billing.credits(params)


def mean_generation_seconds(params: CreateVideoRequest) -> float:
    """Typical seconds from create to completion: about 165 s for 8 s of 720p with audio (the
    contract example's estimate), under a minute for a short silent 480p draft."""
    return params.profile.estimated_generation_seconds(params)


@dataclass(frozen=True)
class Timeline:
    created: float
    processing_at: float
    generation_seconds: float  # the full generation, even if the task fails part way
    ends_at: float  # completion, or the failure instant
    error_code: str | None
    estimated_time: int

    @classmethod
    def draw(
        cls,
        params: CreateVideoRequest,
        now: float,
        rng: random.Random,
        fixed_seconds: float | None,
        error_code: str | None,
    ) -> Timeline:
        if fixed_seconds is not None:
            total = fixed_seconds
            queue = 0.1 * total
        else:
            # Lognormal spread around the mean, clipped: real queues have long but bounded tails.
            total = mean_generation_seconds(params) * min(2.5, max(0.5, rng.lognormvariate(0.0, 0.25)))
            queue = min(0.2 * total, rng.expovariate(1 / 3.0))
        generation = total - queue
        if error_code is None:
            fraction = 1.0
        elif error_code == POLICY_CODE:
            fraction = POLICY_FRACTION + rng.uniform(-0.05, 0.05)
        else:
            fraction = rng.uniform(0.1, 0.9)
        estimate = fixed_seconds if fixed_seconds is not None else mean_generation_seconds(params)
        return cls(
            created=now,
            processing_at=now + queue,
            generation_seconds=generation,
            ends_at=now + queue + generation * fraction,
            error_code=error_code,
            estimated_time=math.ceil(estimate),
        )


@dataclass(eq=False)
class SimTask:
    id: str
    params: CreateVideoRequest
    prompt_sha256: str
    directives: Directives
    timeline: Timeline
    credits_reserved: float
    results_base: str
    cancelled_at: float | None = None
    settled: bool = False
    callback_attempts: int = 0
    callback_deliveries: int = 0
    bytes_served: int = 0  # body bytes written to downloads of this task's result
    downloads: int = 0  # GETs of this task's result answered with a body
    notes: list[str] = field(default_factory=list)
    # Set by `/_sim/tasks/{id}/refuse`: API calls about this task answer this status (401/403),
    # as after a key revocation or an account change at the provider.
    refused_status: int | None = None
    # The create request's body as received: the model's own wire fields, for tests to check.
    wire: dict[str, Any] = field(default_factory=dict)

    @property
    def ended_at(self) -> float:
        return self.cancelled_at if self.cancelled_at is not None else self.timeline.ends_at

    def status_at(self, now: float) -> tuple[TaskStatus, int]:
        timeline = self.timeline
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return TaskStatus.CANCELLED, self._progress(self.cancelled_at)
        if now < timeline.processing_at:
            return TaskStatus.PENDING, 0
        if now < timeline.ends_at:
            return TaskStatus.PROCESSING, self._progress(now)
        if timeline.error_code is not None:
            return TaskStatus.FAILED, self._progress(timeline.ends_at)
        return TaskStatus.COMPLETED, 100

    def _progress(self, at: float) -> int:
        timeline = self.timeline
        if at <= timeline.processing_at or timeline.generation_seconds <= 0:
            return 0
        # 100 only with the result in hand: a running task tops out at 99.
        return min(99, int(100 * (at - timeline.processing_at) / timeline.generation_seconds))

    def is_terminal_at(self, now: float) -> bool:
        return now >= self.ended_at

    def result_names(self) -> list[str]:
        """One video per result: `n` of them where the model makes several (Veo)."""
        return [f"{index}.mp4" for index in range(self.params.n or 1)]

    def result_urls(self) -> list[str]:
        return [f"{self.results_base}/results/{self.id}/{name}" for name in self.result_names()]

    def link_expired_at(self, now: float) -> bool:
        """Output links are valid for 24 hours from completion (contract)."""
        return now >= self.ended_at + LINK_TTL_SECONDS

    def snapshot(self, now: float) -> dict[str, Any]:
        """The task object (contract shape) as it stands at simulated time `now`."""
        status, progress = self.status_at(now)
        terminal = status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
        usage: dict[str, Any] = {
            "billing_rule": self.params.profile.billing.rule,
            "credits_reserved": number(self.credits_reserved),
            "user_group": "default",
        }
        body: dict[str, Any] = {
            "id": self.id,
            "object": "video.generation.task",
            "type": "video",
            "model": self.params.model,
            "created": int(self.timeline.created),
            "status": status.value,
            "progress": progress,
            "task_info": {
                "can_cancel": not terminal,
                "estimated_time": self.timeline.estimated_time,
                "video_duration": self.params.duration,
            },
            "usage": usage,
        }
        if status is TaskStatus.COMPLETED:
            body["results"] = self.result_urls()
            usage["credits_charged"] = number(self.credits_reserved)
        elif terminal:
            code = CANCELLED_CODE if status is TaskStatus.CANCELLED else (self.timeline.error_code or "")
            body["error"] = {
                "code": code,
                "message": ERROR_MESSAGES.get(code, f"Generation failed ({code})."),
                "type": error_type(code),
            }
            usage["credits_refunded"] = number(self.credits_reserved)
        if terminal:
            body["completed_at"] = int(self.ended_at)
        return body

    def stale_snapshot(self) -> dict[str, Any]:
        """What a GET would have shown halfway through: a late duplicate of old news."""
        start = self.timeline.created
        return self.snapshot(start + (self.ended_at - start) / 2)
