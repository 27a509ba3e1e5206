"""The video parameters are one model (`gptimage2.VideoParams`) that the workflow's input and
its activity inputs carry, and inputs recorded before that (flat fields) still read the same.

The old-shape payloads below are copied verbatim from `tests/histories/draft-retry-orphan-9e739e.json`
(its workflow input and its first `create_task` and `rehost_result`): what a running workflow's
history, or an activity queued before the change, hands the new code. Fast: no server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.schemas import CreateGenerationRequest
from gptimage2 import CreateVideoRequest, Mode, Quality, VideoParams
from workflows.models import CreateTaskInput, GenerationInput, RehostInput

PROMPT = "A ticket quotes any task [run 696c890df8] #lost-response #fail=service_errorx1"
OLD_WORKFLOW_INPUT = json.loads(
    '{"tenant":"demo","idempotency_key":"9ee2bca01f8147208bc63e1ae6a98268","spec":{"user_id":"user-1",'
    '"prompt":"' + PROMPT + '","model":"seedance-1.5-pro","duration":4,"quality":"480p",'
    '"aspect_ratio":"16:9","generate_audio":true,"image_urls":[],"scenario":"general","draft_first":true},'
    '"request_hash":"cf107f81f10f4da0b68c73f674e476f332c8a045b6cd685cca9f2f1f86c13f35",'
    '"budget":{"max_attempts":3,"max_credits":null},"job_ttl_seconds":7200,"poll_initial_seconds":2.0,'
    '"poll_max_seconds":4.0,"approval_ttl_seconds":604800,"heartbeat_timeout_seconds":30.0,'
    '"index_search_attributes":true,"submitted_at":"2026-11-30T19:31:30.508846Z"}'
)
OLD_CREATE_INPUT = json.loads(
    '{"workflow_id":"gen-demo-2ae56ab6c8c8a785c2c527913300b673","attempt":1,"model":"seedance-1.5-pro",'
    '"prompt":"' + PROMPT + '","duration":4,"quality":"480p","aspect_ratio":"16:9","generate_audio":false,'
    '"image_urls":[]}'
)
OLD_REHOST_INPUT = json.loads(
    '{"workflow_id":"gen-demo-2ae56ab6c8c8a785c2c527913300b673","tenant":"demo","user_id":"user-1",'
    '"phase":"draft","index":0,"url":"https://127.0.0.1:33355/results/task-unified-1796068294-2636b0b8/0.mp4",'
    '"task_id":"task-unified-1796068294-2636b0b8","prompt_hash":"6ad9f6f52d11a6ea","model":"seedance-1.5-pro",'
    '"mode":"text-to-video","duration":4,"quality":"480p","generate_audio":false,"outcome_category":"passed",'
    '"credits":12.0,"expires_at":"2026-12-01T19:31:31.035174Z"}'
)
PARAM_NAMES = set(VideoParams.model_fields)


def params_of(old: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in old.items() if name in PARAM_NAMES}


def set_values(values: dict[str, Any]) -> dict[str, Any]:
    """Without unset optional fields: what an old input says, whatever optional fields the
    parameters have gained since."""
    return {name: value for name, value in values.items() if value is not None}


def test_an_old_workflow_input_reads_with_the_same_values_and_request_hash() -> None:
    new = GenerationInput.model_validate(OLD_WORKFLOW_INPUT)
    old_spec = OLD_WORKFLOW_INPUT["spec"]
    assert set_values(new.spec.params.model_dump(mode="json")) == params_of(old_spec)
    assert (new.spec.user_id, new.spec.scenario.value, new.spec.draft_first) == ("user-1", "general", True)
    assert set_values(new.spec.flat()) == old_spec
    # The idempotency check compares this with the hash a running generation holds in its memo.
    assert new.spec.request_hash() == OLD_WORKFLOW_INPUT["request_hash"]
    rest = {name: value for name, value in OLD_WORKFLOW_INPUT.items() if name != "spec"}
    assert set_values(new.model_dump(mode="json", exclude={"spec"})) == set_values(rest)


def test_a_queued_old_create_builds_the_same_provider_request() -> None:
    new = CreateTaskInput.model_validate(OLD_CREATE_INPUT)
    assert (new.workflow_id, new.attempt) == (OLD_CREATE_INPUT["workflow_id"], 1)
    assert set_values(new.params.model_dump(mode="json")) == params_of(OLD_CREATE_INPUT)
    # As `ProviderActivities.create_task` builds it, and the body the client sends.
    request = CreateVideoRequest(**new.params.model_dump(), callback_url=None)
    assert request.model_dump(mode="json", exclude_none=True) == params_of(OLD_CREATE_INPUT)


def test_an_optional_field_added_to_the_params_changes_no_request_hash() -> None:
    """A repeat of a request sent before the field existed must still match its generation."""

    class WithOption(VideoParams):
        made_up_option: int | None = None

    spec = GenerationInput.model_validate(OLD_WORKFLOW_INPUT).spec
    unset = spec.model_copy(update={"params": WithOption(**spec.params.model_dump())})
    assert "made_up_option" in unset.flat() and unset.request_hash() == OLD_WORKFLOW_INPUT["request_hash"]
    chosen = spec.model_copy(update={"params": WithOption(**spec.params.model_dump(), made_up_option=7)})
    assert chosen.request_hash() != OLD_WORKFLOW_INPUT["request_hash"]


@pytest.mark.parametrize("mode", [Mode.TEXT_TO_VIDEO, Mode.IMAGE_TO_VIDEO])
def test_a_queued_old_rehost_keeps_what_its_manifest_records(mode: Mode) -> None:
    old = OLD_REHOST_INPUT | {"mode": mode.value}
    new = RehostInput.model_validate(old)
    # outcome_category left RehostInput (it was always "passed"; the manifest's default now).
    retired = {"outcome_category"}
    kept = set(old) - PARAM_NAMES - retired
    assert kept <= RehostInput.model_fields.keys()
    assert new.model_dump(mode="json", include=kept) == {name: old[name] for name in kept}
    assert new.mode is mode  # the old shape has no image URLs to derive it from
    assert (new.params.model, new.params.duration, new.params.quality, new.params.generate_audio) == (
        "seedance-1.5-pro",
        4,
        Quality.P480,
        False,
    )


@pytest.mark.parametrize("model", [GenerationInput, CreateTaskInput, RehostInput])
def test_the_new_shape_reads_back_unchanged(
    model: type[GenerationInput | CreateTaskInput | RehostInput],
) -> None:
    old = {
        GenerationInput: OLD_WORKFLOW_INPUT,
        CreateTaskInput: OLD_CREATE_INPUT,
        RehostInput: OLD_REHOST_INPUT,
    }
    made = model.model_validate(old[model])
    dumped = made.model_dump(mode="json")
    assert "params" in (dumped["spec"] if model is GenerationInput else dumped)
    assert model.model_validate(json.loads(json.dumps(dumped))) == made


def test_the_api_request_is_the_video_params_plus_who_it_is_for() -> None:
    """The API derives its body from `VideoParams`: a field added there is accepted by the API
    and reaches the workflow's spec, with no list to update in between."""
    assert PARAM_NAMES <= set(CreateGenerationRequest.model_fields)
    body = {"user_id": "u", "prompt": "a cat", "duration": 6, "image_urls": ["https://a.example/x.png"]}
    spec = CreateGenerationRequest.model_validate(body).to_spec()
    assert spec.params == VideoParams(prompt="a cat", duration=6, image_urls=["https://a.example/x.png"])
    assert spec.user_id == "u" and spec.mode is Mode.IMAGE_TO_VIDEO
