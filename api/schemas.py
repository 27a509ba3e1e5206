"""The HTTP contract as pydantic models: what clients send and what they get back.

The request model extends the contract's `VideoParams` (stricter text rules, unknown fields
refused) and maps onto `workflows.models.GenerationSpec`; responses are projections of `GenerationView` without the
workflow's internals (request hash, orphan bookkeeping).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StrictBool,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from gptimage2 import (
    CALLBACK_URL_MAX,
    KNOWN_MODELS,
    MAX_IMAGES_ANY_MODEL,
    PROMPT_MAX_CHARS,
    SEEDANCE_MODEL,
    FailureCategory,
    Mode,
    VideoParams,
    prompt_problem,
)
from workflows.models import (
    GenerationSpec,
    GenerationStatus,
    GenerationView,
    OutputObject,
    Scenario,
    UnresolvedCreate,
)
from workflows.presets import Preset, with_preset

from .text import json_schema_pattern, text_problem

USER_ID_MAX = 128


def _known_model(value: str) -> str:
    if value not in KNOWN_MODELS:
        raise ValueError(f"unknown model; expected one of {', '.join(KNOWN_MODELS)}")
    return value


def _valid_prompt(value: str) -> str:
    problem = prompt_problem(value) or text_problem(value, multiline=True)
    if problem:
        raise ValueError(problem)
    return value


def _valid_line(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _valid_user_id(value: str) -> str:
    if not value.strip():
        raise ValueError("user_id must not be blank")
    # It becomes a search attribute that ops filter on in the Web UI.
    return _valid_line(value)


def _text(*, multiline: bool = False, **constraints: Any) -> Any:
    """A free-text field's constraints, with the character rule (`api.text`) published as a
    pattern; the validator that enforces it goes beside (it names the character)."""
    return Field(json_schema_extra={"pattern": json_schema_pattern(multiline=multiline)}, **constraints)


# The API's free-text types: every text field in a request, body or query, is one of these.
UserId = Annotated[StrictStr, _text(min_length=1, max_length=USER_ID_MAX), AfterValidator(_valid_user_id)]
Prompt = Annotated[
    StrictStr, _text(multiline=True, min_length=1, max_length=PROMPT_MAX_CHARS), AfterValidator(_valid_prompt)
]
ImageUrl = Annotated[StrictStr, _text(min_length=1, max_length=CALLBACK_URL_MAX), AfterValidator(_valid_line)]


ModelName = Annotated[
    StrictStr, AfterValidator(_known_model), WithJsonSchema({"type": "string", "enum": list(KNOWN_MODELS)})
]


class CreateGenerationRequest(VideoParams):
    """Body of `POST /v1/generations`: the video parameters (omitted ones take the scenario's
    preset, `GET /v1/presets`, then the provider contract's defaults), stricter where the API
    must be, and who and what it is for."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    model: ModelName = SEEDANCE_MODEL
    image_urls: list[ImageUrl] = Field(
        default_factory=list,
        max_length=MAX_IMAGES_ANY_MODEL,
        description="0 = text-to-video, 1 = image-to-video, 2 = first and last frame (how many a model "
        "takes: GET /v1/models). Public HTTPS, jpg/png/webp, at most 10 MB each; checked before the "
        "generation starts.",
    )
    user_id: UserId
    scenario: Scenario = Scenario.GENERAL
    draft_first: StrictBool = False
    notify_url: ImageUrl | None = Field(
        None,
        description="Also send this generation's webhook events here, signed with the tenant's "
        "notify_url secret (HTTPS, public addresses only; checked before the generation starts).",
    )

    # The fields the client sent. Not `model_fields_set`: the model's own defaults are filled
    # in before validation (VideoParams), and a preset must still fill what was omitted.
    _sent: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_sent(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        request = handler(data)
        if isinstance(data, dict) and isinstance(request, CreateGenerationRequest):
            request._sent = frozenset(data)
        return request

    def to_spec(self) -> GenerationSpec:
        """The effective request: the fields sent, the preset's for the video fields omitted."""
        return GenerationSpec.model_validate(with_preset(self.model_dump(), self._sent))


class GenerationOut(BaseModel):
    """A generation as clients see it (`GET /v1/generations/{id}` and every write's answer)."""

    id: str
    user_id: str
    status: GenerationStatus
    stage: str
    progress: float
    mode: Mode
    scenario: Scenario
    model: str
    params: VideoParams | None = Field(
        None, description="The effective video parameters (the draft's, in `draft`)."
    )
    preset_fields: list[str] = Field(
        default_factory=list, description="The fields of `params` the scenario's preset set."
    )
    failure_category: FailureCategory | None = None
    failure_message: str | None = None
    guidance: str | None = None
    outputs: list[OutputObject] = Field(default_factory=list)
    credits: float = Field(description="Credits of the whole generation (draft included).")
    final_credits: float = Field(
        0.0, description="Credits of the final alone: `credits` less `draft.credits`."
    )
    attempts: int
    provider_task_ids: list[str] = Field(default_factory=list)
    callbacks_received: int = Field(
        0,
        description="Provider callbacks (hints) that reached this generation; repeats the API "
        "answered at the edge are not counted. 0 with `polls` > 0: callbacks are not arriving.",
    )
    polls: int = Field(
        0, description="Times the workflow re-read the provider task because no callback came in time."
    )
    unresolved_create: UnresolvedCreate | None = Field(
        None,
        description="Set while a create's outcome is unknown: the generation waits for the provider's "
        "task to call back until `deadline`, then fails rather than risk a second bill.",
    )
    draft: GenerationOut | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    final_started_at: datetime | None = Field(
        None, description="draft_first: when the final started (the approval); null otherwise."
    )
    expected_ready_at: datetime | None = Field(
        None,
        description="While it runs: when a generation like it (model, duration, quality) is usually "
        "ready, from the recent p95. Past it, `stage` starts with 'taking longer than usual'; "
        "null when there is too little recent history.",
    )

    @classmethod
    def from_view(cls, view: GenerationView) -> GenerationOut:
        draft = cls.from_view(view.draft) if view.draft else None
        return cls(
            **view.model_dump(include=set(cls.model_fields) - {"draft"}),
            draft=draft,
            final_credits=round(view.credits - (draft.credits if draft else 0.0), 4),
        )


class PresetList(BaseModel):
    data: list[Preset]


class GenerationSummary(BaseModel):
    id: str
    status: str = Field(description="The status search attribute; may lag the live status briefly.")


class GenerationPage(BaseModel):
    data: list[GenerationSummary]
    next_page_token: str | None = None


# `duplicate`: this hint had already reached the generation, so it was not sent again.
# `late`: the generation has already ended; the hint is acknowledged and dropped.
CallbackStatus = Literal["accepted", "duplicate", "late"]


class CallbackAccepted(BaseModel):
    status: CallbackStatus = "accepted"


class Health(BaseModel):
    status: Literal["ok", "ready"]
