"""Inputs, outputs and state of the generation workflow: the contract between the workflow,
the activities, the API and the starter. Single typed objects, so fields can be added without
breaking running workflows."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, Field, model_validator

from gptimage2 import SEEDANCE_MODEL, FailureCategory, Mode, VideoParams

from .webhook_plan import WebhookPlan

__all__ = ["FailureCategory"]


class GenerationStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    AWAITING_APPROVAL = "awaiting_approval"
    REHOSTING = "rehosting"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({GenerationStatus.DELIVERED, GenerationStatus.FAILED, GenerationStatus.CANCELLED})

_Q, _P, _A, _R = (
    GenerationStatus.QUEUED,
    GenerationStatus.PROCESSING,
    GenerationStatus.AWAITING_APPROVAL,
    GenerationStatus.REHOSTING,
)
_D, _F, _C = GenerationStatus.DELIVERED, GenerationStatus.FAILED, GenerationStatus.CANCELLED
# Every status change the workflow makes: `_set_status` refuses any other (a workflow bug).
# A generation starts `queued` (GenerationView's default). Back to `queued` from `processing`:
# a new provider task after a transient failure, or the provider reporting the task pending
# again. `queued -> rehosting`: the task completed before any read saw it processing. Setting
# the same status again only changes the stage (a new attempt, progress). A re-host is never
# cancelled (a cancel waits for it), and nothing leaves a terminal status.
TRANSITIONS: dict[GenerationStatus, frozenset[GenerationStatus]] = {
    _Q: frozenset({_Q, _P, _R, _F, _C}),
    _P: frozenset({_P, _Q, _R, _F, _C}),
    _R: frozenset({_A, _D, _F}),  # a delivered draft awaits approval; a delivered final ends
    _A: frozenset({_Q, _F, _C}),  # approved: the final starts; approval timed out; rejected/cancelled
    _D: frozenset(),
    _F: frozenset(),
    _C: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A status change not in TRANSITIONS: a bug in the workflow. Not an `ApplicationError`, so
    it fails the workflow task (Temporal retries it, the UI shows it), not the generation."""

    def __init__(self, old: GenerationStatus, new: GenerationStatus) -> None:
        super().__init__(f"generation status {old.value} -> {new.value} is not in TRANSITIONS")
        self.old, self.new = old, new


def check_transition(old: GenerationStatus, new: GenerationStatus) -> None:
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(old, new)


def render_transitions() -> str:
    """TRANSITIONS as the Mermaid state diagram the README shows (a test keeps them equal)."""
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {GenerationView.model_fields['status'].default}"]
    for old, targets in TRANSITIONS.items():
        lines += [f"    {old} --> {new}" for new in GenerationStatus if new in targets]
    lines += [f"    {status} --> [*]" for status in GenerationStatus if status in TERMINAL]
    return "\n".join([*lines, "```"])


class Scenario(StrEnum):
    """The integration guide's scenarios (docs/provider-contract.md); used for defaults in docs
    and to group the cost report."""

    TALKING_HEAD = "talking_head"
    AMBIENT = "ambient"
    PRODUCT_DEMO = "product_demo"
    STORYBOARD = "storyboard"
    FIRST_LAST_FRAME = "first_last_frame"
    GENERAL = "general"


class _TakesFlatParams(BaseModel):
    """A model with `params: VideoParams` that also takes them flat, beside its other fields:
    the API's and the CLI's form, and the shape of every input recorded before `params`
    existed (workflow histories, activities still queued)."""

    # What an input of the flat shape may lack, with the value it stands for.
    _flat_lacks: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _fold_params(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "params" in data:
            return data
        names = VideoParams.model_fields.keys()
        params = cls._flat_lacks | {name: data[name] for name in names if name in data}
        return {name: value for name, value in data.items() if name not in names} | {"params": params}


class GenerationSpec(_TakesFlatParams):
    """What the user asked for: the part of the request that the idempotency hash covers."""

    user_id: str
    params: VideoParams
    scenario: Scenario = Scenario.GENERAL
    draft_first: bool = False
    # The video fields the scenario's preset filled (the request omitted them): workflows.presets.
    preset_fields: list[str] = Field(default_factory=list)
    # Where this generation's events are also sent (webhooks), signed with the tenant's
    # notify_url secret; hashed with the rest (another URL is another request).
    notify_url: str | None = None

    @property
    def mode(self) -> Mode:
        return self.params.mode

    def flat(self) -> dict[str, Any]:
        """The spec as JSON, its video parameters beside the other fields (the request's form)."""
        return self.model_dump(mode="json", exclude={"params", "preset_fields"}) | self.params.model_dump(
            mode="json"
        )

    def request_hash(self) -> str:
        """Same intent, same body -> same hash; a repeat with another body is refused (409)."""
        # Over what the client sent: a field the preset filled hashes as the omitted field it
        # was (the contract default), so a preset changed between two identical requests does
        # not make the second a 409. Over the flat form, so a request hashes as it did before
        # `params` existed; without unset optional fields, so a field added to VideoParams
        # changes no request's hash.
        omitted = {
            name: VideoParams.model_fields[name].get_default(call_default_factory=True)
            for name in self.preset_fields
        }
        sent = self.model_copy(update={"params": self.params.model_copy(update=omitted)})
        body = {name: value for name, value in sent.flat().items() if value is not None}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def prompt_hash(self) -> str:
        return hashlib.sha256(self.params.prompt.encode()).hexdigest()[:16]


class RetryBudget(BaseModel):
    """Transient failures start a new provider task while both limits allow it."""

    max_attempts: int = Field(3, ge=1, le=10)
    max_credits: float | None = Field(None, gt=0)


class GenerationInput(BaseModel):
    tenant: str
    idempotency_key: str
    spec: GenerationSpec
    request_hash: str
    budget: RetryBudget = Field(default_factory=RetryBudget)
    job_ttl_seconds: int = 2 * 3600  # "set a job TTL": a generation still running after this fails as timeout
    poll_initial_seconds: float = 5.0
    poll_max_seconds: float = 60.0
    approval_ttl_seconds: int = 7 * 24 * 3600
    heartbeat_timeout_seconds: float = 30.0  # how soon a dead worker's re-host moves to another
    # Off only where the server cannot index our attributes (the time-skipping test server).
    index_search_attributes: bool = True
    submitted_at: datetime | None = None  # set by the starter (wall clock is not workflow-safe)
    # The draft's parameters (draft_first), from the scenario's preset when the run started, so
    # a preset changed later does not change a running generation. None in older histories.
    draft_params: VideoParams | None = None
    # How long an ambiguous create waits for its task to call back; None: what the provider
    # states such a task takes (workflows.policies.ambiguous_create_window).
    ambiguous_create_window_seconds: float | None = Field(None, gt=0)
    # The tenant has a credit budget (workflows.budget): every provider task is reserved on its
    # ledger before it is created and settled when it ends. The API reserved the first already.
    # None (not False) when off, so an input recorded before the field reads as it was written.
    budgeted: bool | None = None
    # Where its webhook events go, decided at start (None: no endpoint, no notify_url, and then
    # no notification adds anything to its history).
    webhooks: WebhookPlan | None = None
    # The `tenant` label of this generation's metrics: None for its tenant, `-` when the starter's
    # METRICS_TENANT_LABEL is off (workflows.metrics). Metrics only, never a command.
    metrics_tenant: str | None = None

    def initial_view(self, workflow_id: str, now: datetime) -> GenerationView:
        """The state a generation starts in: the workflow's first view, and what the starter
        answers without asking the workflow."""
        spec = self.spec
        return GenerationView(
            id=workflow_id,
            tenant=self.tenant,
            user_id=spec.user_id,
            mode=spec.mode,
            scenario=spec.scenario,
            model=spec.params.model,
            params=spec.params,
            preset_fields=spec.preset_fields,
            request_hash=self.request_hash,
            created_at=self.submitted_at or now,
            updated_at=now,
        )


class OutputObject(BaseModel):
    url: str
    object_key: str
    sha256: str
    size_bytes: int
    content_type: str


class OrphanTask(BaseModel):
    """A provider task that called back but is not this generation's current task."""

    task_id: str
    status: str
    credits: float = 0.0


class UnresolvedCreate(BaseModel):
    """A create whose outcome is unknown (it may have made a task we never heard of): the
    generation waits for that task to call back until `deadline`, then fails rather than
    create again (that could bill twice), unless ops resolve it first (`CreateResolution`)."""

    reason: str
    since: datetime
    deadline: datetime


class CreateResolution(BaseModel):
    """Ops' answer to an unresolved create, after checking the provider's dashboard: `task_id`
    None: no task was made, create again; a task id: that task is this generation's, adopt it."""

    task_id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    note: str | None = Field(None, max_length=500)


class ResolvedCreate(CreateResolution):
    """A resolution as the generation recorded it."""

    at: datetime
    outcome: str


class ProviderCallback(BaseModel):
    """Signal payload: a hint that a provider task may have changed. Never acted on directly."""

    task_id: str
    status: str = ""
    credits: float = 0.0


class GenerationView(BaseModel):
    """What the query, the workflow result, the API's GET and `starter.py status --json` return."""

    id: str
    tenant: str
    user_id: str
    status: GenerationStatus = GenerationStatus.QUEUED
    stage: str = "queued"
    progress: float = 0
    mode: Mode = Mode.TEXT_TO_VIDEO
    scenario: Scenario = Scenario.GENERAL
    model: str = SEEDANCE_MODEL
    params: VideoParams | None = None  # the effective request (the draft's, in `draft`)
    preset_fields: list[str] = Field(default_factory=list)
    failure_category: FailureCategory | None = None
    failure_message: str | None = None
    guidance: str | None = None
    outputs: list[OutputObject] = Field(default_factory=list)
    credits: float = 0.0
    attempts: int = 0
    provider_task_ids: list[str] = Field(default_factory=list)
    orphans: list[OrphanTask] = Field(default_factory=list)
    callbacks_received: int = 0
    polls: int = 0
    unresolved_create: UnresolvedCreate | None = None
    resolutions: list[ResolvedCreate] = Field(default_factory=list)
    draft: GenerationView | None = None
    request_hash: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # An approved draft's final started here: its TTL and expected time run from this.
    final_started_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


class ApprovalDecision(BaseModel):
    approved: bool
    note: str | None = None


class ActivityErrorType:
    """`ApplicationError.type` values the activities raise and the workflow branches on."""

    PROVIDER_REJECTED = "ProviderRejected"  # the provider refused the call (4xx): never retried
    CREATE_AMBIGUOUS = "CreateAmbiguous"  # the create may have reached the provider: no blind retry
    CREATE_NOT_SENT = "CreateNotSent"  # an inline create surely never arrived: created as an activity
    LINK_EXPIRED = "LinkExpired"  # the result URL no longer serves (403/404/410)
    RESULT_HOST_REFUSED = "ResultHostRefused"  # the result URL points somewhere we never download from


class CreateTaskInput(_TakesFlatParams):
    workflow_id: str
    attempt: int
    params: VideoParams
    # The run's first create, as a local activity in its first workflow task (policies, "create"):
    # tried once, no backoff; a failure that surely never arrived raises CREATE_NOT_SENT.
    inline: bool = False
    # Asked for while replaying, or on a retried first workflow task: an earlier run of this
    # inline create, on a worker that died before recording it, may have reached the provider.
    # It is refused as CreateAmbiguous, without a request.
    may_have_run_before: bool = False


class RehostInput(_TakesFlatParams):
    workflow_id: str
    tenant: str
    user_id: str
    phase: str  # "final" or "draft": part of the object key
    index: int
    url: str
    task_id: str
    # The manifest records these two, not the prompt and image URLs they come from (and
    # re-hosts queued before `params` carried neither).
    prompt_hash: str
    mode: Mode
    params: VideoParams
    credits: float
    expires_at: datetime

    _flat_lacks = {"prompt": ""}
