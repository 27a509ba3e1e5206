"""Scenario presets: the integration guide's "Parameter defaults by scenario" table
(docs/provider-contract.md), the one place it lives.

A preset fills the video fields a request omitted (explicit fields always win) and says what
the draft of a `draft_first` generation is made of. `GET /v1/presets` lists this table.

The idempotency hash covers what the client sent, not what the preset filled in
(`GenerationSpec.request_hash`): a preset changed between two identical POSTs does not turn a
retried click into a 409.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gptimage2 import VideoParams

from .models import GenerationSpec, Scenario

# The standard draft (cheap and quick: 480p, 4 s, silent), over the final's parameters.
CHEAP_DRAFT: dict[str, Any] = {"quality": "480p", "duration": 4, "generate_audio": False}


class Preset(BaseModel):
    model_config = ConfigDict(frozen=True)

    scenario: Scenario
    defaults: dict[str, Any] = Field(
        description="Video fields this scenario sets when the request omits them."
    )
    draft: dict[str, Any] = Field(
        description="The draft's fields over the final's (draft_first). A `model` here makes the "
        "draft on a cheaper model."
    )
    images_required: int | None = Field(None, description="image_urls must hold exactly this many.")
    note: str = ""


PRESETS: dict[Scenario, Preset] = {
    preset.scenario: preset
    for preset in (
        Preset(
            scenario=Scenario.GENERAL, defaults={}, draft=CHEAP_DRAFT, note="no preset: contract defaults"
        ),
        Preset(
            scenario=Scenario.TALKING_HEAD,
            defaults={"duration": 8, "quality": "720p", "aspect_ratio": "16:9", "generate_audio": True},
            draft=CHEAP_DRAFT,
            note='Put spoken lines in "double quotes".',
        ),
        Preset(
            scenario=Scenario.AMBIENT,
            defaults={"duration": 6, "quality": "720p", "aspect_ratio": "16:9", "generate_audio": True},
            draft=CHEAP_DRAFT,
            note="Ambient / b-roll.",
        ),
        Preset(
            scenario=Scenario.PRODUCT_DEMO,
            defaults={"duration": 5, "quality": "720p", "aspect_ratio": "adaptive", "generate_audio": True},
            draft={"generate_audio": False},
            note="Draft without audio; final with audio.",
        ),
        Preset(
            scenario=Scenario.STORYBOARD,
            defaults={"duration": 4, "quality": "480p", "aspect_ratio": "16:9", "generate_audio": False},
            draft=CHEAP_DRAFT,
            note="Optimised for iteration speed; finalise later.",
        ),
        Preset(
            scenario=Scenario.FIRST_LAST_FRAME,
            defaults={"duration": 8, "quality": "720p"},
            draft=CHEAP_DRAFT,
            images_required=2,
            note="Provide 2 images (first and last frame); keep the composition consistent.",
        ),
    )
}


def with_preset(data: Mapping[str, Any], sent: Collection[str]) -> dict[str, Any]:
    """A flat spec (`GenerationSpec`'s input form) with its scenario's defaults for the video
    fields not in `sent`, and `preset_fields` naming the fields the preset filled."""
    preset = PRESETS[Scenario(data.get("scenario", Scenario.GENERAL))]
    filled = {name: value for name, value in preset.defaults.items() if name not in sent}
    return {**data, **filled, "preset_fields": sorted(filled)}


def images_problem(scenario: Scenario, count: int) -> str | None:
    """Why `count` images do not suit the scenario, or None."""
    required = PRESETS[scenario].images_required
    if required is not None and count != required:
        return f"scenario {scenario.value} requires exactly {required} image URLs (got {count})"
    return None


def draft_params(spec: GenerationSpec) -> VideoParams:
    """The draft's parameters: the scenario's draft row over the approved request's."""
    return VideoParams.model_validate(spec.params.model_dump() | PRESETS[spec.scenario].draft)
