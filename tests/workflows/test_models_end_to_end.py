"""Every profiled model on real servers: the API validates per model (422 naming the allowed
values), `GET /v1/models` lists the profiles, the provider activity sends the model's own wire
fields (checked as the simulator received them), and a generation per model family completes
with every result re-hosted (Veo with n=2: two objects)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from devstack.testbed import Testbed
from gptimage2 import KNOWN_MODELS, PROFILES, AudioWire, ModelProfile, Quality
from tests.helpers.flow import finished, prompt, sim_tasks_for, start
from workflows.models import GenerationStatus

AUTH = {"Authorization": "Bearer demo-secret"}


async def _post(stack: Testbed, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(verify=stack.tls.ssl_context()) as http:
        return await http.post(
            f"{stack.api_url}/v1/generations",
            json={"user_id": "user-1", **body},
            headers={**AUTH, "Idempotency-Key": uuid.uuid4().hex},
        )


async def test_models_are_listed_from_the_profiles_behind_auth(stack: Testbed) -> None:
    async with httpx.AsyncClient(verify=stack.tls.ssl_context()) as http:
        assert (await http.get(f"{stack.api_url}/v1/models")).status_code == 401
        listed = (await http.get(f"{stack.api_url}/v1/models", headers=AUTH)).json()["models"]
    assert [m["id"] for m in listed] == list(KNOWN_MODELS)
    veo = next(m for m in listed if m["id"] == "veo-3.1-generate-preview")
    assert veo["durations"] == [4, 6, 8] and veo["max_results"] == 4 and "n" in veo["wire_fields"]


@pytest.mark.parametrize(
    ("model", "field", "value", "allowed"),
    [
        ("seedance-1.5-pro", "duration", 13, "4 to 12"),
        ("veo-3.1-generate-preview", "duration", 5, "4, 6, 8"),
        ("veo-3.1-fast-generate-preview", "quality", "4k", "720p, 1080p"),
        ("veo-3.1-generate-preview", "n", 5, "between 1 and 4"),
        ("kling-v3-text-to-video", "duration", 2, "3 to 15"),
        ("kling-v3-text-to-video", "aspect_ratio", "21:9", "16:9, 9:16, 1:1"),
        ("kling-o1-image-to-video", "duration", 6, "5, 10"),
        ("wan2.6-text-to-video", "quality", "480p", "720p, 1080p"),
        ("wan2.6-text-to-video", "generate_audio", True, "no audio"),
        ("MiniMax-Hailuo-2.3", "duration", 8, "6, 10"),
        ("MiniMax-Hailuo-2.3-Fast", "image_urls", [], "exactly 1 image"),
    ],
)
async def test_out_of_range_field_is_422_naming_the_models_allowed_values(
    stack: Testbed, model: str, field: str, value: Any, allowed: str
) -> None:
    response = await _post(stack, {"model": model, "prompt": "a cat", field: value})
    assert response.status_code == 422, response.text
    errors = {e["field"]: e["message"] for e in response.json()["error"]["fields"]}
    assert allowed in errors[field], errors


def out_of_range(profile: ModelProfile, image: str) -> list[tuple[str, Any, str]]:
    """(field, a value this model refuses, what the refusal must say), for every field the
    model restricts, derived from its profile."""
    cases: list[tuple[str, Any, str]] = [
        ("duration", profile.durations[-1] + 1, profile.allowed_durations()),
        ("n", profile.max_results + 1, f"between 1 and {profile.max_results}"),
    ]
    if profile.qualities:
        refused = next(q for q in Quality if q not in profile.qualities)
        cases.append(("quality", refused.value, ", ".join(q.value for q in profile.qualities)))
    else:
        cases.append(("quality", "720p", "no quality setting"))
    if not profile.aspect_ratios:
        cases.append(("aspect_ratio", "16:9", "omit aspect_ratio"))
    elif profile.aspect_ratios != tuple(PROFILES["seedance-1.5-pro"].aspect_ratios):
        cases.append(("aspect_ratio", "21:9", ", ".join(a.value for a in profile.aspect_ratios)))
    if profile.audio is AudioWire.NONE:
        cases.append(("generate_audio", True, "no audio"))
    if profile.min_images:
        cases.append(("image_urls", [], profile.image_count_text()))
    if profile.max_images == 0:
        cases.append(("image_urls", [image], "no images"))
    return cases


@pytest.mark.parametrize("model", KNOWN_MODELS)
async def test_every_restricted_field_of_every_model_is_422_naming_its_values(
    stack: Testbed, model: str
) -> None:
    profile = PROFILES[model]
    cases = out_of_range(profile, f"{stack.sim.base_url}/_sim/images/sample.png")
    assert len(cases) >= 3
    # One request with every bad field: the 422 names each one (and the API's rate limit holds).
    response = await _post(stack, {"model": model, "prompt": "a cat", **{f: v for f, v, _ in cases}})
    assert response.status_code == 422, response.text
    errors = {e["field"]: e["message"] for e in response.json()["error"]["fields"]}
    for field, _, allowed in cases:
        assert allowed in errors.get(field, ""), (field, errors)


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"model": "kling-v3-image-to-video", "image_start": "IMG", "sound": "loud"}, "sound", "on, off"),
        ({"model": "kling-v3-image-to-video", "image_end": "IMG"}, "image_start", "requires image_start"),
        ({"model": "kling-v3-image-to-video", "image_start": "IMG", "duration": 16}, "duration", "3 to 15"),
        ({"model": "kling-v3-image-to-video"}, "image_start", "1 to 2 images"),
        ({"model": "veo-3.1-generate-preview", "n": 5}, "n", "between 1 and 4"),
        ({"model": "veo-3.1-generate-preview", "quality": "4k"}, "quality", "720p, 1080p"),
        ({"model": "wan2.6-image-to-video"}, "image_urls", "exactly 1 image"),
        ({"model": "MiniMax-Hailuo-2.3", "quality": "1080p", "duration": 10}, "quality", "10 s at 1080p"),
        ({"model": "kling-o1-image-to-video", "image_urls": ["IMG"], "duration": 7}, "duration", "5, 10"),
    ],
)
async def test_the_simulator_refuses_a_bad_wire_field_in_the_providers_envelope(
    stack: Testbed, body: dict[str, Any], param: str, says: str
) -> None:
    """The stand-in gateway checks each model by the same profile entry, naming the wire field."""
    image = f"{stack.sim.base_url}/_sim/images/sample.png"
    sent = {k: [image] if v == ["IMG"] else image if v == "IMG" else v for k, v in body.items()}
    async with httpx.AsyncClient(verify=stack.tls.ssl_context()) as http:
        response = await http.post(
            f"{stack.sim.base_url}/v1/videos/generations",
            json={"prompt": prompt("bad wire"), **sent},
            headers={"Authorization": f"Bearer {stack.sim.api_key}"},
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error") and says in error["message"]


async def test_an_unknown_model_is_422_listing_the_profiles(stack: Testbed) -> None:
    response = await _post(stack, {"model": "veo-3.1", "prompt": "a cat"})
    assert response.status_code == 422
    assert "veo-3.1-generate-preview" in response.text


TEXT_MODELS = [m for m, p in PROFILES.items() if p.min_images == 0]


@pytest.mark.parametrize("model", TEXT_MODELS)
async def test_a_valid_request_reaches_the_provider_in_the_models_wire_fields(
    stack: Testbed, model: str
) -> None:
    text = prompt("wire")
    response = await _post(stack, {"model": model, "prompt": text})
    assert response.status_code == 202, response.text
    view = await finished(stack, response.json()["id"])
    assert view.status is GenerationStatus.DELIVERED, view
    [task] = sim_tasks_for(stack, text)
    profile = PROFILES[model]
    wire = task["wire"]
    assert wire["model"] == model and wire["duration"] == profile.default_duration
    assert set(wire) == set(profile.wire_fields) - {"image_start", "image_end"} - (
        set() if profile.max_images else {"image_urls"}
    )


async def test_veo_with_n_2_rehosts_two_objects(stack: Testbed) -> None:
    text = prompt("veo pair")
    started = await start(stack, text, model="veo-3.1-fast-generate-preview", n=2, duration=4)
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED, view
    [task] = sim_tasks_for(stack, text)
    assert task["wire"]["n"] == 2 and task["wire"]["generation_type"] == "TEXT" and task["results"] == 2
    assert len(view.outputs) == 2
    keys = [output.object_key for output in view.outputs]
    assert [key.rsplit("/", 1)[-1] for key in keys] == ["final-0.mp4", "final-1.mp4"]


@pytest.mark.parametrize(
    ("model", "images", "expected"),
    [
        ("kling-v3-image-to-video", 2, {"image_start", "image_end", "sound"}),
        ("wan2.6-image-to-video", 1, {"image_urls"}),
        ("MiniMax-Hailuo-2.3-Fast", 1, {"image_urls", "quality"}),
        ("seedance-1.5-pro", 2, {"image_urls", "generate_audio"}),
        ("kling-o1-image-to-video", 1, {"image_urls", "aspect_ratio"}),
        ("veo-3.1-generate-preview", 2, {"image_urls", "generation_type", "n"}),
    ],
)
async def test_an_image_model_generates_end_to_end(
    stack: Testbed, model: str, images: int, expected: set[str]
) -> None:
    urls = [f"{stack.sim.base_url}/_sim/images/sample.png", f"{stack.sim.base_url}/_sim/images/sample.jpg"]
    text = prompt(f"{model} frames")
    started = await start(stack, text, model=model, image_urls=urls[:images])
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED, view
    [task] = sim_tasks_for(stack, text)
    assert expected <= set(task["wire"])
    if model == "kling-v3-image-to-video":
        assert (task["wire"]["image_start"], task["wire"]["image_end"]) == tuple(urls)
        assert "image_urls" not in task["wire"] and task["wire"]["sound"] == "off"
    if model.startswith("veo"):
        assert task["wire"]["generation_type"] == "FIRST&LAST"
    assert len(view.outputs) == 1
