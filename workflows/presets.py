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
from gptimage2.profiles import PROFILES, SEEDANCE_MODEL

from .models import GenerationSpec, Scenario

# The standard draft, over the final's parameters: Seedance's cheapest settings (480p, 4 s,
# silent), as its model profile defines them.
CHEAP_DRAFT: dict[str, Any] = PROFILES[SEEDANCE_MODEL].cheapest_settings()


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


def _row(
    scenario: Scenario,
    seed: tuple[int, str, str | None, bool | None],
    note: str,
    *,
    draft: dict[str, Any] = CHEAP_DRAFT,
    images_required: int | None = None,
) -> Preset:
    """One row of the guide's table: (duration, quality, aspect ratio, audio); None sets nothing."""
    names = ("duration", "quality", "aspect_ratio", "generate_audio")
    defaults = {name: value for name, value in zip(names, seed, strict=True) if value is not None}
    return Preset(
        scenario=scenario, defaults=defaults, draft=draft, images_required=images_required, note=note
    )


PRESETS: dict[Scenario, Preset] = {
    preset.scenario: preset
    for preset in (
        Preset(
            scenario=Scenario.GENERAL, defaults={}, draft=CHEAP_DRAFT, note="no preset: contract defaults"
        ),
        _row(Scenario.TALKING_HEAD, (8, "720p", "16:9", True), 'Put spoken lines in "double quotes".'),
        _row(Scenario.AMBIENT, (6, "720p", "16:9", True), "Ambient / b-roll."),
        _row(
            Scenario.PRODUCT_DEMO,
            (5, "720p", "adaptive", True),
            "Draft without audio; final with audio.",
            draft={"generate_audio": False},
        ),
        _row(
            Scenario.STORYBOARD, (4, "480p", "16:9", False), "Optimised for iteration speed; finalise later."
        ),
        _row(
            Scenario.FIRST_LAST_FRAME,
            (8, "720p", None, None),
            "Provide 2 images (first and last frame); keep the composition consistent.",
            images_required=2,
        ),
    )
}


def with_preset(data: Mapping[str, Any], sent: Collection[str]) -> dict[str, Any]:
    """A flat spec (`GenerationSpec`'s input form) with its scenario's defaults for the video
    fields not in `sent`, and `preset_fields` naming the fields the preset filled.

    The table is written for Seedance; on another model each default is fitted to what that
    model allows (`ModelProfile.nearest`: 8 s on Kling O1 becomes 10 s, 720p on Hailuo 768p)
    and a field the model does not take is left to the model's own default, so a preset never
    makes a request invalid for a field the caller did not send."""
    preset = PRESETS[Scenario(data.get("scenario", Scenario.GENERAL))]
    profile = PROFILES.get(str(data.get("model") or SEEDANCE_MODEL))
    filled: dict[str, Any] = {}
    for name, value in preset.defaults.items():  # duration first: quality's limits depend on it
        if name in sent:
            continue
        if profile is not None:
            duration = filled.get("duration", data.get("duration"))
            value = profile.nearest(name, value, duration)
            if value is None:
                continue
        filled[name] = value
    return {**data, **filled, "preset_fields": sorted(filled)}


def images_problem(scenario: Scenario, count: int) -> str | None:
    """Why `count` images do not suit the scenario, or None."""
    required = PRESETS[scenario].images_required
    if required is not None and count != required:
        return f"scenario {scenario.value} requires exactly {required} image URLs (got {count})"
    return None


def draft_params(spec: GenerationSpec) -> VideoParams:
    """The draft's parameters: the scenario's draft row over the approved request's. The
    standard row (CHEAP_DRAFT) means the cheapest a model allows: the draft runs on the model
    its profile names for drafts (Veo -> Veo Fast) or on the final's own, at that model's
    cheapest settings (Seedance's are exactly CHEAP_DRAFT), with one result."""
    final = spec.params
    row = dict(PRESETS[spec.scenario].draft)
    # A row naming only a model drafts on that model at its cheapest, like the standard row.
    model = row.pop("model", None) or final.profile.draft_model or final.model
    if (row == CHEAP_DRAFT or not row) and model in PROFILES:
        row = {**PROFILES[model].cheapest_settings(), "n": None}
    return VideoParams.model_validate(final.model_dump() | {"model": model} | row)
