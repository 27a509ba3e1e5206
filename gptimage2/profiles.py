"""Model profiles: one entry per video model behind the gateway's `POST /v1/videos/generations`.

The gateway (EvoLink's unified API) shares the task, error envelope, `usage` and callback
contract across models; what differs per model is here, once: the allowed values of each field,
the defaults an omitted field takes, how the neutral request (`VideoParams`) maps to the model's
wire fields, how many results a task returns and the billing rule. The contract's validation
(`VideoParams`), the client's request body, `GET /v1/models` and the simulator read this table;
adding a model is one entry. Sources and where they disagree with issue 11: docs/models.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Quality(StrEnum):
    P480 = "480p"
    P720 = "720p"
    P768 = "768p"
    P1080 = "1080p"
    P4K = "4k"


class AspectRatio(StrEnum):
    WIDE = "16:9"
    TALL = "9:16"
    SQUARE = "1:1"
    CLASSIC = "4:3"
    PORTRAIT = "3:4"
    CINEMA = "21:9"
    ADAPTIVE = "adaptive"


class AudioWire(StrEnum):
    """How a model takes the neutral `generate_audio`."""

    NONE = "none"  # silent model: the field is not sent, and audio cannot be asked for
    BOOL = "generate_audio"  # `"generate_audio": true|false`
    ON_OFF = "sound"  # `"sound": "on"|"off"`


class ImageWire(StrEnum):
    """How a model takes the neutral `image_urls`."""

    URLS = "image_urls"  # `"image_urls": [...]`
    START_END = "image_start"  # `"image_start": first, "image_end": last (optional)`


# Veo's `generation_type`, derived from the image count (REFERENCE is not offered: see docs/models.md).
VEO_TEXT, VEO_FIRST_LAST = "TEXT", "FIRST&LAST"


class _Priced(Protocol):
    @property
    def duration(self) -> int: ...
    @property
    def quality(self) -> Quality | None: ...
    @property
    def generate_audio(self) -> bool: ...
    @property
    def n(self) -> int | None: ...


@dataclass(frozen=True)
class Billing:
    """Credits per second of video by quality (key None: a model without a quality setting), plus
    a per-second audio surcharge, times the number of results. The Seedance rule is the
    contract's (8 s 720p with audio reserves 50); the others are plausible, shaped like the
    gateway's published per-second price lists, and are not the gateway's figures."""

    per_second: Mapping[Quality | None, float]
    audio_per_second: float = 0.0
    rule: str = "per_second"
    # Wan: reserved on the requested duration, charged on the actual one (the simulator charges
    # what it reserved: its clips are exactly as long as asked).
    charged_on_actual: bool = False

    def credits(self, params: _Priced) -> float:
        rate = self.per_second[params.quality] + (self.audio_per_second if params.generate_audio else 0.0)
        return params.duration * rate * (params.n or 1)


@dataclass(frozen=True)
class ModelProfile:
    id: str
    family: str
    source: str  # the published schema this entry follows
    durations: tuple[int, ...]
    default_duration: int
    qualities: tuple[Quality, ...]  # empty: the model has no quality setting (none is sent)
    default_quality: Quality | None
    aspect_ratios: tuple[AspectRatio, ...]  # empty: none is sent (the model follows the image)
    default_aspect_ratio: AspectRatio | None
    audio: AudioWire
    default_audio: bool
    images: ImageWire
    min_images: int
    max_images: int
    billing: Billing
    max_results: int = 1  # `n` on the wire when above 1 (Veo)
    calls_back: bool = True  # every model honours `callback_url` (shared contract)
    # (quality, duration) pairs the model refuses although each value alone is allowed.
    excluded: tuple[tuple[Quality, int], ...] = ()
    generation_type: bool = False  # Veo: sends TEXT / FIRST&LAST from the image count
    # A cheaper model of the same family taking the same request, for drafts (Veo -> Veo Fast).
    draft_model: str | None = None
    # What the gateway states a task takes (`task_info.estimated_time`): set-up and queue, plus
    # work per second of video (0.6 of it below 720p, 1.3 times it with audio). Seedance's gives
    # the contract's example, 165 s for 8 s of 720p with audio; the simulator draws around it.
    generation_base_seconds: float = 20.0
    generation_seconds_per_second: float = 14.0
    notes: str = ""
    wire_fields: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = ["model", "prompt", "duration"]
        names += ["quality"] if self.qualities else []
        names += ["aspect_ratio"] if self.aspect_ratios else []
        names += [self.audio.value] if self.audio is not AudioWire.NONE else []
        if self.max_images:
            names += ["image_start", "image_end"] if self.images is ImageWire.START_END else ["image_urls"]
        names += ["generation_type"] if self.generation_type else []
        names += ["n"] if self.max_results > 1 else []
        object.__setattr__(self, "wire_fields", (*names, "callback_url"))

    # -- the neutral request ------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        """What an omitted neutral field becomes for this model."""
        return {
            "duration": self.default_duration,
            "quality": self.default_quality,
            "aspect_ratio": self.default_aspect_ratio,
            "generate_audio": self.default_audio,
            "image_urls": [],  # so a model that requires images refuses none
        }

    def cheapest_settings(self) -> dict[str, Any]:
        """The cheapest values this model allows, without audio: what a draft defaults to
        (Seedance: 4 s, 480p, silent)."""
        quality = min(self.qualities, key=self.billing.per_second.__getitem__) if self.qualities else None
        return {"duration": self.durations[0], "quality": quality, "generate_audio": False}

    def estimated_generation_seconds(self, params: _Priced) -> float:
        """The provider's stated time from create to the end of a task with these settings."""
        quality = 1.0 if params.quality is Quality.P720 else 0.6
        audio = 1.3 if params.generate_audio else 1.0
        return (
            self.generation_base_seconds
            + params.duration * self.generation_seconds_per_second * quality * audio
        )

    def allowed_durations(self) -> str:
        values = self.durations
        contiguous = len(values) > 3 and values == tuple(range(values[0], values[-1] + 1))
        return f"{values[0]} to {values[-1]}" if contiguous else ", ".join(map(str, values))

    def field_problem(self, name: str, value: Any, duration: int | None = None) -> str | None:
        """Why `value` is not allowed for the neutral field `name` on this model, or None."""
        if name == "duration":
            if value not in self.durations:
                return f"duration must be one of {self.allowed_durations()} seconds for {self.id}"
        elif name == "quality":
            if not self.qualities:
                return None if value is None else f"{self.id} has no quality setting; omit quality"
            if value not in self.qualities:
                return f"quality must be one of {_listed(self.qualities)} for {self.id}"
            if (value, duration) in self.excluded:
                return f"{self.id} does not make {duration} s at {value}"
        elif name == "aspect_ratio":
            if not self.aspect_ratios:
                return None if value is None else f"{self.id} has no aspect_ratio setting; omit aspect_ratio"
            if value not in self.aspect_ratios:
                return f"aspect_ratio must be one of {_listed(self.aspect_ratios)} for {self.id}"
        elif name == "generate_audio":
            if self.audio is AudioWire.NONE and value:
                return f"{self.id} makes no audio; generate_audio must be false or omitted"
        elif name == "image_urls":
            if not self.min_images <= len(value) <= self.max_images:
                return f"{self.id} takes {self.image_count_text()}"
        elif name == "n" and value is not None and not 1 <= value <= self.max_results:
            return f"n must be between 1 and {self.max_results} for {self.id}"
        return None

    def nearest(self, name: str, value: Any, duration: int | None = None) -> Any:
        """The allowed value of a neutral field closest to `value` on this model (a default from
        elsewhere, e.g. a scenario preset, fitted to the model); None: the model takes no such
        field, or audio it cannot make. Ties go to the smaller, cheaper value."""
        if self.field_problem(name, value, duration) is None:
            return value
        if name == "duration":
            return min(self.durations, key=lambda d: (abs(d - value), d))
        if name == "quality" and self.qualities:
            rank = list(Quality).index
            usable = [q for q in self.qualities if (q, duration) not in self.excluded]
            return min(usable, key=lambda q: (abs(rank(q) - rank(Quality(value))), rank(q)))
        if name == "aspect_ratio":
            return self.default_aspect_ratio
        return None

    def image_count_text(self) -> str:
        low, high = self.min_images, self.max_images
        if high == 0:
            return "no images"
        count = f"exactly {low}" if low == high else f"{low} to {high}"
        return f"{count} image{'s' if high > 1 else ''}"

    # -- the wire -----------------------------------------------------------------------------
    def wire_body(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The model's request body from a neutral create request (JSON-ready values)."""
        body: dict[str, Any] = {key: request[key] for key in ("model", "prompt", "duration")}
        if self.qualities:
            body["quality"] = request["quality"]
        if self.aspect_ratios:
            body["aspect_ratio"] = request["aspect_ratio"]
        audio = bool(request["generate_audio"])
        if self.audio is AudioWire.BOOL:
            body["generate_audio"] = audio
        elif self.audio is AudioWire.ON_OFF:
            body["sound"] = "on" if audio else "off"
        urls = list(request.get("image_urls") or [])
        if self.images is ImageWire.START_END:
            body.update(zip(("image_start", "image_end"), urls, strict=False))
        elif self.max_images:
            body["image_urls"] = urls
        if self.generation_type:
            body["generation_type"] = VEO_FIRST_LAST if urls else VEO_TEXT
        if self.max_results > 1:
            body["n"] = request.get("n") or 1
        if request.get("callback_url") is not None:
            body["callback_url"] = request["callback_url"]
        return body

    def neutral_from_wire(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The neutral fields a wire body carries (what the simulator validates), and the wire
        name of each neutral field, to name the field a refusal is about. Fields the model does
        not take are ignored, as the gateway ignores unknown fields."""
        neutral = {key: body[key] for key in ("model", "prompt", "duration", "callback_url") if key in body}
        if self.qualities and "quality" in body:
            neutral["quality"] = body["quality"]
        if self.aspect_ratios and "aspect_ratio" in body:
            neutral["aspect_ratio"] = body["aspect_ratio"]
        names = {"image_urls": "image_urls", "generate_audio": "generate_audio"}
        if self.audio is AudioWire.BOOL and "generate_audio" in body:
            neutral["generate_audio"] = body["generate_audio"]
        elif self.audio is AudioWire.ON_OFF:
            names["generate_audio"] = "sound"
            if "sound" in body:
                neutral["generate_audio"] = {"on": True, "off": False}.get(body["sound"], body["sound"])
        if self.images is ImageWire.START_END:
            names["image_urls"] = "image_start"
            neutral["image_urls"] = [body[key] for key in ("image_start", "image_end") if key in body]
        elif self.max_images and "image_urls" in body:
            neutral["image_urls"] = body["image_urls"]
        if self.max_results > 1 and "n" in body:
            neutral["n"] = body["n"]
        return neutral, names

    def describe(self) -> dict[str, Any]:
        """The profile as `GET /v1/models` lists it (enough for a UI to build its form)."""
        return {
            "id": self.id,
            "family": self.family,
            "durations": list(self.durations),
            "default_duration": self.default_duration,
            "qualities": [q.value for q in self.qualities],
            "default_quality": self.default_quality,
            "aspect_ratios": [a.value for a in self.aspect_ratios],
            "default_aspect_ratio": self.default_aspect_ratio,
            "audio": self.audio.value,
            "default_audio": self.default_audio,
            "images": {"wire": self.images.value, "min": self.min_images, "max": self.max_images},
            "max_results": self.max_results,
            "draft_model": self.draft_model,
            "calls_back": self.calls_back,
            "billing_rule": self.billing.rule,
            "wire_fields": list(self.wire_fields),
            "source": self.source,
            "notes": self.notes,
        }


def _listed(values: tuple[StrEnum, ...]) -> str:
    return ", ".join(v.value for v in values)


_DOCS = "https://docs.evolink.ai/en/api-manual/video-series/"
_ALL_RATIOS = tuple(AspectRatio)
_VEO = {
    "family": "veo",
    "durations": (4, 6, 8),
    "default_duration": 4,
    "qualities": (Quality.P720, Quality.P1080),
    "default_quality": Quality.P720,
    "aspect_ratios": (AspectRatio.WIDE, AspectRatio.TALL),
    "default_aspect_ratio": AspectRatio.WIDE,
    "audio": AudioWire.BOOL,
    "default_audio": True,
    "images": ImageWire.URLS,
    "min_images": 0,
    "max_images": 2,
    "max_results": 4,
    "generation_type": True,
}
_KLING_V3 = {
    "family": "kling",
    "durations": tuple(range(3, 16)),
    "default_duration": 5,
    "qualities": (Quality.P720, Quality.P1080, Quality.P4K),
    "default_quality": Quality.P720,
    "audio": AudioWire.ON_OFF,
    "default_audio": False,
    "billing": Billing({Quality.P720: 5.4, Quality.P1080: 7.2, Quality.P4K: 14.4}, audio_per_second=2.7),
}
_WAN = {
    "family": "wan",
    "durations": (5, 10, 15),
    "default_duration": 5,
    "qualities": (Quality.P720, Quality.P1080),
    "default_quality": Quality.P720,
    "audio": AudioWire.NONE,
    "default_audio": False,
    "images": ImageWire.URLS,
    "billing": Billing({Quality.P720: 5.0, Quality.P1080: 7.5}, charged_on_actual=True),
}
_HAILUO = {
    "family": "hailuo",
    "durations": (6, 10),
    "default_duration": 6,
    "qualities": (Quality.P768, Quality.P1080),
    "default_quality": Quality.P768,
    "aspect_ratios": (),
    "default_aspect_ratio": None,
    "audio": AudioWire.NONE,
    "default_audio": False,
    "images": ImageWire.URLS,
    "excluded": ((Quality.P1080, 10),),
}

SEEDANCE = ModelProfile(
    id="seedance-1.5-pro",
    family="seedance",
    source="docs/provider-contract.md (the contract this service was built on)",
    durations=tuple(range(4, 13)),
    default_duration=5,
    qualities=(Quality.P480, Quality.P720),
    default_quality=Quality.P720,
    aspect_ratios=_ALL_RATIOS,
    default_aspect_ratio=AspectRatio.WIDE,
    audio=AudioWire.BOOL,
    default_audio=True,
    images=ImageWire.URLS,
    min_images=0,
    max_images=2,
    billing=Billing({Quality.P720: 5.0, Quality.P480: 3.0}, audio_per_second=1.25),
    notes="mode by image count: 0 text-to-video, 1 image-to-video, 2 first and last frame",
)

PROFILES: dict[str, ModelProfile] = {
    profile.id: profile
    for profile in (
        SEEDANCE,
        ModelProfile(
            id="veo-3.1-generate-preview",
            source=_DOCS + "veo3.1/veo-3.1-generate-preview-generate",
            billing=Billing({Quality.P720: 11.52, Quality.P1080: 11.52}, audio_per_second=5.76),
            draft_model="veo-3.1-fast-generate-preview",
            notes="generation_type TEXT (no image) or FIRST&LAST (1-2 images); n results per task",
            **_VEO,  # type: ignore[arg-type]
        ),
        ModelProfile(
            id="veo-3.1-fast-generate-preview",
            source=_DOCS + "veo3.1/veo-3.1-fast-generate-preview-generate",
            billing=Billing({Quality.P720: 5.76, Quality.P1080: 5.76}, audio_per_second=2.88),
            notes="the cheaper Veo: generation_type TEXT or FIRST&LAST; n results per task",
            **_VEO,  # type: ignore[arg-type]
        ),
        ModelProfile(
            id="kling-o1-image-to-video",
            family="kling",
            source=_DOCS + "kling/ (kling-o1-image-to-video; issue 11's table, not re-verified)",
            durations=(5, 10),
            default_duration=5,
            qualities=(),
            default_quality=None,
            aspect_ratios=(AspectRatio.WIDE, AspectRatio.TALL, AspectRatio.SQUARE),
            default_aspect_ratio=AspectRatio.WIDE,
            audio=AudioWire.NONE,
            default_audio=False,
            images=ImageWire.URLS,
            min_images=1,
            max_images=2,
            billing=Billing({None: 7.0}),
        ),
        ModelProfile(
            id="kling-v3-text-to-video",
            source=_DOCS + "kling/kling-v3-text-to-video",
            aspect_ratios=(AspectRatio.WIDE, AspectRatio.TALL, AspectRatio.SQUARE),
            default_aspect_ratio=AspectRatio.WIDE,
            images=ImageWire.URLS,
            min_images=0,
            max_images=0,
            **_KLING_V3,  # type: ignore[arg-type]
        ),
        ModelProfile(
            id="kling-v3-image-to-video",
            source=_DOCS + "kling/kling-v3-image-to-video",
            aspect_ratios=(),
            default_aspect_ratio=None,
            images=ImageWire.START_END,
            min_images=1,
            max_images=2,
            notes="image_urls[0] is sent as image_start (required), image_urls[1] as image_end",
            **_KLING_V3,  # type: ignore[arg-type]
        ),
        ModelProfile(
            id="wan2.6-text-to-video",
            source=_DOCS + "wan2.6/ (text-to-video: assumed as image-to-video's durations)",
            aspect_ratios=_ALL_RATIOS[:5],
            default_aspect_ratio=AspectRatio.WIDE,
            min_images=0,
            max_images=0,
            **_WAN,  # type: ignore[arg-type]
        ),
        ModelProfile(
            id="wan2.6-image-to-video",
            source=_DOCS + "wan2.6/wan2.6-image-to-video",
            aspect_ratios=(),
            default_aspect_ratio=None,
            min_images=1,
            max_images=1,
            notes="credits reserved on the requested duration, charged on the actual one",
            **_WAN,  # type: ignore[arg-type]
        ),
        ModelProfile(
            id="MiniMax-Hailuo-2.3",
            source=_DOCS + "hailuo/hailuo-2-3-video-generate",
            min_images=0,
            max_images=1,
            billing=Billing({Quality.P768: 4.0, Quality.P1080: 7.0}),
            **_HAILUO,  # type: ignore[arg-type]
        ),
        ModelProfile(
            id="MiniMax-Hailuo-2.3-Fast",
            source=_DOCS + "hailuo/ (Hailuo 2.3 Fast: image-to-video only)",
            min_images=1,
            max_images=1,
            billing=Billing({Quality.P768: 2.5, Quality.P1080: 4.5}),
            **_HAILUO,  # type: ignore[arg-type]
        ),
    )
}
SEEDANCE_MODEL = SEEDANCE.id
KNOWN_MODELS: tuple[str, ...] = tuple(PROFILES)
MAX_IMAGES_ANY_MODEL = max(profile.max_images for profile in PROFILES.values())
MAX_RESULTS_ANY_MODEL = max(profile.max_results for profile in PROFILES.values())


def profile_for(model: str) -> ModelProfile | None:
    return PROFILES.get(model)
