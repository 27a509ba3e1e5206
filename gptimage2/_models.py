"""The GPTImage2 task API contract as typed models (docs/provider-contract.md).

The create request is strict (every contract rule, so a bad request fails here with the field
named, before it costs a round trip). The task object is tolerant: unknown fields are kept and
an unknown status is treated as "still running", because the provider may add either.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .profiles import (
    KNOWN_MODELS,
    MAX_IMAGES_ANY_MODEL,
    SEEDANCE,
    SEEDANCE_MODEL,
    AspectRatio,
    ModelProfile,
    Quality,
    profile_for,
)

__all__ = ["KNOWN_MODELS", "SEEDANCE_MODEL", "AspectRatio", "Quality"]  # re-exported from .profiles

PROMPT_MAX_CHARS = 8000
PROMPT_MAX_WORDS = 2000  # "up to 2000 tokens": counted conservatively as words and characters
# Seedance's limits, as the simulator's own (independent) checks for it use them.
DURATION_MIN, DURATION_MAX, DURATION_DEFAULT = (
    SEEDANCE.durations[0],
    SEEDANCE.durations[-1],
    SEEDANCE.default_duration,
)
MAX_IMAGES = SEEDANCE.max_images
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
CALLBACK_URL_MAX = 2048
LINK_TTL_SECONDS = 24 * 3600  # "Output links are valid for 24 hours."


class Mode(StrEnum):
    """Inferred by the provider from the number of image URLs."""

    TEXT_TO_VIDEO = "text-to-video"
    IMAGE_TO_VIDEO = "image-to-video"
    FIRST_LAST_FRAME = "first-last-frame"

    @classmethod
    def from_image_count(cls, count: int) -> Mode:
        return (cls.TEXT_TO_VIDEO, cls.IMAGE_TO_VIDEO, cls.FIRST_LAST_FRAME)[count]


class TaskStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


def is_private_host(host: str) -> bool:
    """True for a literal IP (any spelling `ipaddress` accepts) that is not globally routable,
    or for a name that is plainly local. DNS names are resolved by the callers that need it."""
    name = host.strip("[]").lower().rstrip(".")
    if name in {"localhost", "localhost.localdomain"} or name.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


def prompt_problem(prompt: str) -> str | None:
    """Why a prompt breaks the contract, or None."""
    if not prompt.strip():
        return "prompt must not be empty"
    if len(prompt) > PROMPT_MAX_CHARS:
        return f"prompt is longer than {PROMPT_MAX_CHARS} characters (about 2000 tokens)"
    if len(prompt.split()) > PROMPT_MAX_WORDS:
        return f"prompt has more than {PROMPT_MAX_WORDS} words (about 2000 tokens)"
    return None


class VideoParams(BaseModel):
    """What a video is made of: the create request's fields, without where to call back.

    The one list of them. The workflow's spec and its activity inputs carry this model, the
    create request and the API's request body extend it, so a new provider field is added here
    (and in the simulator, which checks requests its own way). Per-field rules that hold
    everywhere live here; the content checks are the create request's (the API has stricter
    ones of its own)."""

    model: str = SEEDANCE_MODEL
    prompt: str
    duration: StrictInt = Field(DURATION_DEFAULT, description="seconds; allowed values depend on the model")
    quality: Quality | None = SEEDANCE.default_quality
    aspect_ratio: AspectRatio | None = SEEDANCE.default_aspect_ratio
    generate_audio: StrictBool = SEEDANCE.default_audio
    image_urls: list[str] = Field(default_factory=list, max_length=MAX_IMAGES_ANY_MODEL)
    # None (one result) rather than 1, so requests without it keep their idempotency hash.
    n: StrictInt | None = Field(None, description="results per task, where the model makes several (Veo)")

    # Per model (gptimage2.profiles): an omitted field takes the model's default, and each
    # field must be one the model allows. An unknown model is held to Seedance's rules here;
    # the API refuses it outright.
    @model_validator(mode="before")
    @classmethod
    def _model_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(model := data.get("model", SEEDANCE_MODEL), str):
            profile = profile_for(model)
            if profile is not None:
                return profile.defaults() | data
        return data

    @field_validator("duration", "quality", "aspect_ratio", "generate_audio", "image_urls", "n")
    @classmethod
    def _allowed_for_model(cls, value: Any, info: ValidationInfo) -> Any:
        problem = _profile(info).field_problem(info.field_name or "", value, info.data.get("duration"))
        if problem:
            raise ValueError(problem)
        return value

    @property
    def profile(self) -> ModelProfile:
        return profile_for(self.model) or SEEDANCE

    @property
    def mode(self) -> Mode:
        return Mode.from_image_count(len(self.image_urls))


def _profile(info: ValidationInfo) -> ModelProfile:
    model = info.data.get("model")
    return (profile_for(model) if isinstance(model, str) else None) or SEEDANCE


class CreateVideoRequest(VideoParams):
    """Body of `POST /v1/videos/generations`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    callback_url: str | None = None

    def wire_body(self) -> dict[str, Any]:
        """The body this model takes on the wire (an unknown model gets every field)."""
        body = self.model_dump(mode="json", exclude_none=True)
        profile = profile_for(self.model)
        return profile.wire_body(body) if profile is not None else body

    @field_validator("model")
    @classmethod
    def _model_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must not be empty")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_within_limits(cls, value: str) -> str:
        problem = prompt_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("image_urls")
    @classmethod
    def _images_are_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"image URL must be an absolute http(s) URL: {url[:100]!r}")
        return value

    @field_validator("callback_url")
    @classmethod
    def _callback_is_https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > CALLBACK_URL_MAX:
            raise ValueError(f"callback_url is longer than {CALLBACK_URL_MAX} characters")
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("callback_url must be an absolute HTTPS URL")
        return value


class TaskError(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = "unknown_error"
    message: str = ""
    type: str | None = None

    @field_validator("code", "message", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        # Tolerance: a numeric code (as in the HTTP error envelope) or a null must not make the
        # whole task unreadable, which the client would report as a lost response.
        if value is None:
            return "unknown_error" if info.field_name == "code" else ""
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class TaskInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    can_cancel: bool | None = None
    estimated_time: float | None = None
    video_duration: float | None = None


class Usage(BaseModel):
    model_config = ConfigDict(extra="allow")

    billing_rule: str | None = None
    credits_reserved: float | None = None
    # Not in the documented example; the simulator reports them and the client keeps them if sent.
    credits_charged: float | None = None
    credits_refunded: float | None = None
    user_group: str | None = None


class ProviderTask(BaseModel):
    """The task object: create response, `GET /v1/tasks/{id}` and callback body share it."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: str | None = None
    type: str | None = None
    model: str | None = None
    created: int | None = None
    status: str = TaskStatus.PENDING.value
    progress: float = 0
    task_info: TaskInfo | None = None
    usage: Usage | None = None
    results: list[str] | None = None
    error: TaskError | None = None
    completed_at: int | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status_text(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("progress", mode="before")
    @classmethod
    def _progress_number(cls, value: Any) -> Any:
        # A pending task may report `"progress": null`; unreadable would mean "response lost".
        return 0 if value is None else value

    @property
    def known_status(self) -> TaskStatus | None:
        """The status if the contract names it; None (treat as still running) otherwise."""
        try:
            return TaskStatus(self.status)
        except ValueError:
            return None

    @property
    def is_terminal(self) -> bool:
        return self.known_status in TERMINAL_STATUSES

    @property
    def credits(self) -> float:
        """What this task costs us now: charged if completed, nothing if refunded, else reserved."""
        usage = self.usage or Usage()
        if self.known_status is TaskStatus.COMPLETED:
            return float(
                usage.credits_charged if usage.credits_charged is not None else usage.credits_reserved or 0
            )
        if self.known_status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            return 0.0
        return float(usage.credits_reserved or 0)


class Credits(BaseModel):
    """One balance of `GET /v1/credits` (the gateway's account API): `data.token` is the API key's,
    `data.user` the account's."""

    model_config = ConfigDict(extra="allow")

    remaining_credits: float = 0.0
    used_credits: float = 0.0
    unlimited_credits: bool = False


class CreditsData(BaseModel):
    model_config = ConfigDict(extra="allow")

    token: Credits = Field(default_factory=Credits)
    user: Credits | None = None


class CreditsResponse(BaseModel):
    """`{"data": {"token": {...}, "user": {...}}, "message": "", "success": true}`."""

    model_config = ConfigDict(extra="allow")

    data: CreditsData
    message: str = ""
    success: bool = True


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: int | str | None = None
    message: str = ""
    type: str | None = None
    param: str | None = None


class ErrorEnvelope(BaseModel):
    """`{"error": {"code": 400, "message": "...", "type": "...", "param": "..."}}`"""

    model_config = ConfigDict(extra="allow")

    error: ErrorBody
