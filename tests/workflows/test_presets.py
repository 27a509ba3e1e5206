"""Scenario presets (workflows/presets.py): the defaults `scenario` fills in, what the API
answers with, the idempotency hash over what the client sent, and the draft's settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.config import ApiConfig
from api.schemas import CreateGenerationRequest
from devstack.testbed import Testbed
from devstack.tls import TLSFiles
from gptimage2 import AspectRatio, Quality, VideoParams
from gptimage2.profiles import PROFILES
from tests.helpers import assert_eventually
from tests.helpers.api import api_serving, auth, stand_in_worker
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.flow import assert_replays, prompt, sim_tasks_for, stored_manifest
from workflows import search_attributes as sa
from workflows.ids import generation_workflow_id
from workflows.models import GenerationSpec, Scenario
from workflows.presets import CHEAP_DRAFT, PRESETS, Preset, draft_params, images_problem, with_preset

ROOMY = ApiConfig(rate_limit_per_second=10_000, rate_limit_burst=10_000)
VIDEO_FIELDS = set(VideoParams.model_fields)


def request(**fields: Any) -> CreateGenerationRequest:
    return CreateGenerationRequest.model_validate({"user_id": "user-1", "prompt": "a lighthouse", **fields})


# ---- pure logic --------------------------------------------------------------------------------


def test_every_scenario_has_one_preset_of_valid_video_fields() -> None:
    assert set(PRESETS) == set(Scenario)
    for scenario, preset in PRESETS.items():
        assert preset.scenario is scenario
        assert set(preset.defaults) <= VIDEO_FIELDS and set(preset.draft) <= VIDEO_FIELDS
        VideoParams.model_validate({"prompt": "p", **preset.defaults})  # values in the contract's range
        VideoParams.model_validate({"prompt": "p", **preset.defaults, **preset.draft})


def test_the_seed_table_as_effective_values() -> None:
    expected = {
        Scenario.TALKING_HEAD: (8, Quality.P720, AspectRatio.WIDE, True),
        Scenario.AMBIENT: (6, Quality.P720, AspectRatio.WIDE, True),
        Scenario.PRODUCT_DEMO: (5, Quality.P720, AspectRatio.ADAPTIVE, True),
        Scenario.STORYBOARD: (4, Quality.P480, AspectRatio.WIDE, False),
    }
    for scenario, values in expected.items():
        params = request(scenario=scenario.value).to_spec().params
        assert (params.duration, params.quality, params.aspect_ratio, params.generate_audio) == values


def test_explicit_fields_win_and_the_filled_ones_are_named() -> None:
    spec = request(scenario="talking_head", duration=10, generate_audio=False).to_spec()
    assert (spec.params.duration, spec.params.generate_audio, spec.params.quality) == (
        10,
        False,
        Quality.P720,
    )
    assert spec.preset_fields == ["aspect_ratio", "quality"]
    # Sending the preset's own value is still sending it: not a preset field.
    assert request(scenario="ambient", duration=6).to_spec().preset_fields == [
        "aspect_ratio",
        "generate_audio",
        "quality",
    ]
    general = request(duration=7).to_spec()
    assert general.preset_fields == [] and general.params.duration == 7
    # The CLI's form: the fields it was given are the ones sent.
    sent = {"user_id": "u", "prompt": "p", "scenario": "storyboard", "quality": "720p"}
    cli = GenerationSpec.model_validate(with_preset(sent, sent))
    assert (cli.params.quality, cli.params.duration, cli.preset_fields) == (
        Quality.P720,
        4,
        ["aspect_ratio", "duration", "generate_audio"],
    )


IMAGES = ["https://img.example/a.png", "https://img.example/b.png"]


def test_a_preset_is_fitted_to_the_model_not_a_422_for_a_field_the_caller_never_sent() -> None:
    """The table is Seedance's; on another model each default becomes that model's nearest
    allowed value, and a field the model does not take is left to the model."""
    kling = request(scenario="talking_head", model="kling-o1-image-to-video", image_urls=IMAGES[:1])
    params = kling.to_spec().params  # raw table values would be 422: 8 s and 720p
    assert (params.duration, params.quality, params.aspect_ratio, params.generate_audio) == (
        10,  # 5 and 10 allowed: 10 is nearer to 8
        None,  # Kling O1 has no quality setting
        AspectRatio.WIDE,
        False,  # a silent model: audio is not filled
    )
    assert kling.to_spec().preset_fields == ["aspect_ratio", "duration"]
    veo = request(scenario="product_demo", model="veo-3.1-generate-preview").to_spec()
    # 5 s lies between 4 and 6 (the cheaper wins); `adaptive` is not Veo's: its default instead.
    assert (veo.params.duration, veo.params.aspect_ratio, veo.params.generate_audio) == (
        4,
        AspectRatio.WIDE,
        True,
    )
    hailuo = request(scenario="storyboard", model="MiniMax-Hailuo-2.3").to_spec()
    assert (hailuo.params.duration, hailuo.params.quality) == (6, Quality.P768)  # 4 s -> 6, 480p -> 768p
    assert "aspect_ratio" not in hailuo.preset_fields  # Hailuo follows its image: none is sent
    # Every scenario on every model makes a valid request from what the preset fills.
    for scenario in Scenario:
        for model, profile in PROFILES.items():
            count = max(profile.min_images, 2 if scenario is Scenario.FIRST_LAST_FRAME else 0)
            if count > profile.max_images:
                continue
            request(scenario=scenario.value, model=model, image_urls=IMAGES[:count]).to_spec()


def test_nearest_allowed_value_per_field() -> None:
    hailuo = PROFILES["MiniMax-Hailuo-2.3"]
    assert hailuo.nearest("quality", "1080p", duration=10) == Quality.P768  # no 10 s at 1080p
    assert hailuo.nearest("quality", "1080p", duration=6) == "1080p"
    seedance = PROFILES["seedance-1.5-pro"]
    assert seedance.nearest("quality", "4k") == Quality.P720 and seedance.nearest("duration", 30) == 12
    assert PROFILES["wan2.6-text-to-video"].nearest("generate_audio", True) is None


def test_the_hash_covers_what_was_sent_not_what_the_preset_filled(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = {"scenario": "talking_head"}
    before = request(**sent).to_spec()
    monkeypatch.setitem(
        PRESETS,
        Scenario.TALKING_HEAD,
        PRESETS[Scenario.TALKING_HEAD].model_copy(update={"defaults": {"duration": 6, "quality": "480p"}}),
    )
    after = request(**sent).to_spec()
    assert before.params != after.params and before.request_hash() == after.request_hash()
    # A field the client sent is in the hash, whatever the preset says.
    assert request(scenario="talking_head", duration=9).to_spec().request_hash() != before.request_hash()
    # A preset field hashes as the omitted field it was: the hash of the body as sent.
    as_sent = GenerationSpec.model_validate({"user_id": "user-1", "prompt": "a lighthouse", **sent})
    assert as_sent.preset_fields == [] and before.request_hash() == as_sent.request_hash()


def test_the_draft_comes_from_the_scenarios_draft_row() -> None:
    demo = draft_params(request(scenario="product_demo", draft_first=True).to_spec())
    assert (demo.duration, demo.quality, demo.aspect_ratio, demo.generate_audio) == (
        5,
        Quality.P720,
        AspectRatio.ADAPTIVE,
        False,
    )
    head = draft_params(request(scenario="talking_head", aspect_ratio="9:16", draft_first=True).to_spec())
    assert (head.duration, head.quality, head.aspect_ratio, head.generate_audio) == (
        4,
        Quality.P480,
        AspectRatio.TALL,
        False,
    )


def test_first_last_frame_needs_two_images() -> None:
    assert images_problem(Scenario.FIRST_LAST_FRAME, 2) is None
    for count in (0, 1):
        assert "exactly 2 image URLs" in (images_problem(Scenario.FIRST_LAST_FRAME, count) or "")
    assert images_problem(Scenario.TALKING_HEAD, 1) is None


# ---- the API, with a stand-in provider ---------------------------------------------------------


@pytest.fixture(scope="module")
async def provider_queue(temporal_env: WorkflowEnvironment) -> AsyncIterator[tuple[FakeProvider, str]]:
    provider = FakeProvider()
    async with stand_in_worker(temporal_env.client, provider, "preset-tests") as task_queue:
        yield provider, task_queue


@pytest.fixture
async def http(
    temporal_env: WorkflowEnvironment, provider_queue: tuple[FakeProvider, str], dev_tls: TLSFiles
) -> AsyncIterator[httpx.AsyncClient]:
    with api_serving(temporal_env.client, provider_queue[1], dev_tls, ROOMY) as server:
        async with httpx.AsyncClient(
            base_url=server.base_url, verify=dev_tls.ssl_context(), timeout=30
        ) as client:
            yield client


async def post(http: httpx.AsyncClient, payload: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {**auth("demo"), "Idempotency-Key": key or uuid.uuid4().hex}
    return await http.post("/v1/generations", json=payload, headers=headers)


def body(**fields: Any) -> dict[str, Any]:
    return {"user_id": "user-1", "prompt": f"a lighthouse {uuid.uuid4().hex[:8]}", **fields}


async def test_presets_are_listed_to_tenants(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/presets")).status_code == 401
    response = await http.get("/v1/presets", headers=auth("demo"))
    assert response.status_code == 200
    listed = {Scenario(p["scenario"]): Preset.model_validate(p) for p in response.json()["data"]}
    assert listed == PRESETS


async def test_the_answer_shows_effective_values_and_which_the_preset_set(
    http: httpx.AsyncClient, provider_queue: tuple[FakeProvider, str]
) -> None:
    provider = provider_queue[0]
    response = await post(http, body(scenario="talking_head", duration=10))
    assert response.status_code == 202, response.text
    answer = response.json()
    expected = {"duration": 10, "quality": "720p", "aspect_ratio": "16:9", "generate_audio": True}
    assert {name: answer["params"][name] for name in expected} == expected
    assert answer["preset_fields"] == ["aspect_ratio", "generate_audio", "quality"]
    fetched = (await http.get(f"/v1/generations/{answer['id']}", headers=auth("demo"))).json()
    assert (fetched["params"], fetched["preset_fields"]) == (answer["params"], answer["preset_fields"])
    # What the workflow gave the provider: the effective request.
    task_id = await provider.wait_for_task(answer["id"])
    usage = provider.tasks[task_id].usage
    assert usage is not None and usage.credits_reserved == 10 * 10  # the stand-in's 10 per second
    assert (
        await http.post(f"/v1/generations/{answer['id']}/cancel", headers=auth("demo"))
    ).status_code == 200


@pytest.mark.parametrize("images", [0, 1])
async def test_first_last_frame_without_two_images_is_422_naming_image_urls(
    http: httpx.AsyncClient, images: int
) -> None:
    urls = ["https://127.0.0.1/frame.png"] * images  # refused by its text, never fetched
    key = uuid.uuid4().hex
    response = await post(http, body(scenario="first_last_frame", image_urls=urls), key=key)
    assert response.status_code == 422
    fields = {error["field"]: error["message"] for error in response.json()["error"]["fields"]}
    assert "exactly 2 image URLs" in fields["image_urls"]
    missing = await http.get(
        f"/v1/generations/{generation_workflow_id('demo', 'user-1', key)}", headers=auth("demo")
    )
    assert missing.status_code == 404


async def test_a_preset_changed_between_two_identical_posts_is_no_409(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload, key = body(scenario="ambient"), uuid.uuid4().hex
    first = await post(http, payload, key=key)
    assert first.status_code == 202 and first.json()["params"]["duration"] == 6
    # The API serves from this process: the table it reads is this one.
    monkeypatch.setitem(
        PRESETS, Scenario.AMBIENT, PRESETS[Scenario.AMBIENT].model_copy(update={"defaults": {"duration": 7}})
    )
    repeat = await post(http, payload, key=key)
    assert (repeat.status_code, repeat.json()["id"]) == (200, first.json()["id"])
    assert (await post(http, {**payload, "duration": 7}, key=key)).status_code == 409
    assert (
        await http.post(f"/v1/generations/{first.json()['id']}/cancel", headers=auth("demo"))
    ).status_code == 200


# ---- end to end: real API, simulator, Temporal and S3 ------------------------------------------


@dataclass
class DraftFirst:
    """A `draft_first` generation started through the real API, watched and approved there."""

    http: httpx.AsyncClient
    path: str
    headers: dict[str, str]

    async def reaches(self, status: str) -> dict[str, Any]:
        async def view_in() -> dict[str, Any]:
            view: dict[str, Any] = (await self.http.get(self.path, headers=self.headers)).json()
            if view["status"] in ("failed", "cancelled", "delivered") and view["status"] != status:
                pytest.fail(f"the generation ended {view['status']}: {view.get('failure_message')}")
            return view if view["status"] == status else {}

        return await assert_eventually(view_in, within=60, what=f"the generation {status}")

    async def approve(self) -> None:
        assert (await self.http.post(f"{self.path}/approve", headers=self.headers)).status_code == 200


@asynccontextmanager
async def draft_first(stack: Testbed, text: str, scenario: str) -> AsyncIterator[DraftFirst]:
    headers = {"Authorization": "Bearer demo-secret", "Idempotency-Key": uuid.uuid4().hex}
    async with httpx.AsyncClient(base_url=stack.api_url, verify=stack.tls.ssl_context(), timeout=30) as http:
        created = await http.post(
            "/v1/generations",
            json={"user_id": "user-1", "prompt": text, "scenario": scenario, "draft_first": True},
            headers=headers,
        )
        assert created.status_code == 202, created.text
        yield DraftFirst(http, f"/v1/generations/{created.json()['id']}", headers)


async def test_a_product_demo_drafts_silent_and_delivers_with_audio(stack: Testbed) -> None:
    async with draft_first(stack, prompt("A phone turns on a turntable"), "product_demo") as generation:
        draft = (await generation.reaches("awaiting_approval"))["draft"]
        assert (
            draft["params"]["duration"],
            draft["params"]["quality"],
            draft["params"]["generate_audio"],
        ) == (
            5,
            "720p",
            False,
        )
        manifest = stored_manifest(stack, draft["outputs"][0]["object_key"])
        assert (manifest.duration, manifest.quality, manifest.audio) == (5, "720p", False)
        await generation.approve()
        done = await generation.reaches("delivered")
    final = stored_manifest(stack, done["outputs"][0]["object_key"])
    assert (final.duration, final.quality, final.audio) == (5, "720p", True)
    assert done["params"]["aspect_ratio"] == "adaptive" and done["preset_fields"] == [
        "aspect_ratio",
        "duration",
        "generate_audio",
        "quality",
    ]
    # The draft's cost and the final's, apart.
    assert done["draft"]["credits"] == manifest.credits and done["final_credits"] == final.credits
    assert done["credits"] == pytest.approx(done["draft"]["credits"] + done["final_credits"])
    # The final's clock (TTL, expected time) starts at the approval, in the view and in visibility.
    approved = datetime.fromisoformat(done["final_started_at"])
    assert (
        datetime.fromisoformat(done["draft"]["updated_at"])
        <= approved
        <= datetime.fromisoformat(done["updated_at"])
    )
    described = await stack.client.get_workflow_handle(done["id"]).describe()
    assert described.typed_search_attributes.get(sa.FINAL_STARTED) == approved
    await assert_replays(stack, done["id"], "preset-draft-approved")


def test_every_models_draft_is_its_cheapest_allowed_request() -> None:
    """The standard draft row is the draft model's cheapest settings, so `draft_first` works on
    every model (480p is not a Veo quality), on the cheaper model a profile names for drafts."""
    for model, profile in PROFILES.items():
        images = ["https://img.example/a.png", "https://img.example/b.png"][: profile.min_images]
        spec = GenerationSpec.model_validate(
            {"user_id": "u", "prompt": "p", "model": model, "image_urls": images, "draft_first": True}
        )
        draft = draft_params(spec)
        assert draft.model == (profile.draft_model or model)
        assert draft.model_dump(include={"duration", "quality", "generate_audio"}) == (
            PROFILES[draft.model].cheapest_settings()
        )
        assert draft.image_urls == images and draft.prompt == "p"
    seedance = GenerationSpec.model_validate({"user_id": "u", "prompt": "p", "draft_first": True})
    assert draft_params(seedance).model_dump(include=set(CHEAP_DRAFT)) == CHEAP_DRAFT


async def test_a_draft_on_another_model_is_approved_into_a_final_on_seedance(
    stack: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A preset's draft row may name a model: the draft runs there (at that model's cheapest),
    the approved final on the request's own model. Whether another model is cheaper than
    Seedance's own cheapest draft depends on the gateway's prices, which docs/models.md could
    not source, so the shipped presets name none; the mechanism is shown with a talking head
    (Seedance 8 s 720p with audio) drafted on Veo Fast at its cheapest, a cheaper task."""
    draft_model = "veo-3.1-fast-generate-preview"
    head = PRESETS[Scenario.TALKING_HEAD]
    monkeypatch.setitem(
        PRESETS, Scenario.TALKING_HEAD, head.model_copy(update={"draft": {"model": draft_model}})
    )
    text = prompt("A presenter greets the camera")
    async with draft_first(stack, text, "talking_head") as generation:
        draft = (await generation.reaches("awaiting_approval"))["draft"]
        assert draft["params"]["model"] == draft_model
        assert draft["params"]["quality"] == PROFILES[draft_model].cheapest_settings()["quality"]
        assert stored_manifest(stack, draft["outputs"][0]["object_key"]).model == draft_model
        await generation.approve()
        done = await generation.reaches("delivered")
    final = stored_manifest(stack, done["outputs"][0]["object_key"])
    assert final.model == "seedance-1.5-pro" and done["params"]["model"] == "seedance-1.5-pro"
    # The provider saw one task per model, each with that model's own wire fields.
    received = sorted(task["wire"]["model"] for task in sim_tasks_for(stack, text))
    assert received == sorted([draft_model, "seedance-1.5-pro"])
    assert done["draft"]["credits"] + done["final_credits"] == pytest.approx(done["credits"])
    assert 0 < done["draft"]["credits"] < done["final_credits"]  # the draft was the cheaper task
