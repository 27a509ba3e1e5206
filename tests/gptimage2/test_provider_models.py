"""The provider contract as typed models (gptimage2._models): every create-request rule, and a
task object that tolerates what the provider may add. Fast: no server."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gptimage2 import (
    APIConnectionError,
    CreateVideoRequest,
    ErrorEnvelope,
    GPTImage2Client,
    InvalidRequestError,
    Mode,
    ProviderTask,
    TaskError,
    TaskStatus,
    is_private_host,
    prompt_problem,
)

CONTRACT_EXAMPLE = {
    "id": "task-unified-1761313744-ab12cd34",
    "object": "video.generation.task",
    "type": "video",
    "model": "seedance-1.5-pro",
    "created": 1761313744,
    "status": "pending",
    "progress": 0,
    "task_info": {"can_cancel": True, "estimated_time": 165, "video_duration": 8},
    "usage": {"billing_rule": "per_second", "credits_reserved": 50, "user_group": "default"},
}


def request(**fields: Any) -> CreateVideoRequest:
    return CreateVideoRequest.model_validate({"prompt": "a lighthouse at dawn", **fields})


def rejected_field(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        request(**fields)
    return ".".join(str(part) for part in caught.value.errors()[0]["loc"])


def test_defaults_follow_the_contract_table() -> None:
    made = request()
    assert (made.model, made.duration, made.quality, made.aspect_ratio) == (
        "seedance-1.5-pro",
        5,
        "720p",
        "16:9",
    )
    assert made.generate_audio is True and made.image_urls == [] and made.callback_url is None
    assert made.mode is Mode.TEXT_TO_VIDEO


@pytest.mark.parametrize(
    ("count", "mode"), [(0, Mode.TEXT_TO_VIDEO), (1, Mode.IMAGE_TO_VIDEO), (2, Mode.FIRST_LAST_FRAME)]
)
def test_mode_is_inferred_from_the_number_of_images(count: int, mode: Mode) -> None:
    assert request(image_urls=[f"https://cdn.example.com/{i}.png" for i in range(count)]).mode is mode


@pytest.mark.parametrize("duration", [4, 8, 12])
def test_durations_4_to_12_are_accepted(duration: int) -> None:
    assert request(duration=duration).duration == duration


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": ""}, "model"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": "x" * 8001}, "prompt"),
        ({"prompt": "word " * 2001}, "prompt"),
        ({"duration": 3}, "duration"),
        ({"duration": 13}, "duration"),
        ({"duration": "5"}, "duration"),
        ({"duration": 5.0}, "duration"),
        ({"duration": True}, "duration"),
        ({"quality": "1080p"}, "quality"),
        ({"aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"generate_audio": "yes"}, "generate_audio"),
        ({"generate_audio": 1}, "generate_audio"),
        ({"image_urls": ["https://a.example/1.png"] * 3}, "image_urls"),
        ({"image_urls": ["ftp://a.example/1.png"]}, "image_urls"),
        ({"image_urls": ["not a url"]}, "image_urls"),
        ({"callback_url": "http://hooks.example.com/cb"}, "callback_url"),
        ({"callback_url": "https://hooks.example.com/" + "a" * 2048}, "callback_url"),
        ({"callback_url": "hooks.example.com/cb"}, "callback_url"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_each_request_rule_names_its_field(fields: dict[str, Any], param: str) -> None:
    assert rejected_field(**fields) == param


def test_prompt_limits_are_inclusive() -> None:
    assert prompt_problem("x" * 8000) is None
    assert prompt_problem(" ".join(["w"] * 2000)) is None
    assert prompt_problem("x" * 8001) and prompt_problem(" ".join(["w"] * 2001))


def test_callback_url_of_exactly_2048_characters_is_accepted() -> None:
    url = "https://hooks.example.com/"
    url += "a" * (2048 - len(url))
    assert request(callback_url=url).callback_url == url


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.10",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "[::1]",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "localhost",
        "LOCALHOST.",
        "api.localhost",
        "printer.local",
        "db.internal",
    ],
)
def test_private_loopback_and_link_local_hosts_are_private(host: str) -> None:
    assert is_private_host(host)


@pytest.mark.parametrize(
    "host", ["8.8.8.8", "2606:4700:4700::1111", "hooks.example.com", "[2001:4860::8888]"]
)
def test_public_hosts_are_not_private(host: str) -> None:
    assert not is_private_host(host)


def test_contract_example_parses() -> None:
    task = ProviderTask.model_validate(CONTRACT_EXAMPLE)
    assert task.known_status is TaskStatus.PENDING and not task.is_terminal
    assert task.usage is not None and task.usage.credits_reserved == 50
    assert task.task_info is not None and task.task_info.estimated_time == 165
    assert task.credits == 50


def test_unknown_status_is_treated_as_still_running() -> None:
    task = ProviderTask.model_validate({**CONTRACT_EXAMPLE, "status": "queued_for_review"})
    assert task.status == "queued_for_review"
    assert task.known_status is None and not task.is_terminal


def test_status_case_is_normalised() -> None:
    assert ProviderTask.model_validate({**CONTRACT_EXAMPLE, "status": "COMPLETED"}).is_terminal


def test_unknown_fields_are_kept_not_rejected() -> None:
    task = ProviderTask.model_validate(
        {**CONTRACT_EXAMPLE, "region": "ap-southeast-1", "usage": {"credits_reserved": 5, "tier": "gold"}}
    )
    assert task.model_extra == {"region": "ap-southeast-1"}
    assert task.usage is not None and task.usage.model_extra == {"tier": "gold"}


@pytest.mark.parametrize(
    ("status", "usage", "credits"),
    [
        ("processing", {"credits_reserved": 50}, 50),
        ("completed", {"credits_reserved": 50, "credits_charged": 48}, 48),
        ("completed", {"credits_reserved": 50}, 50),
        ("failed", {"credits_reserved": 50, "credits_refunded": 50}, 0),
        ("cancelled", {"credits_reserved": 50}, 0),
    ],
)
def test_credits_follow_settlement(status: str, usage: dict[str, Any], credits: float) -> None:
    task = ProviderTask.model_validate({**CONTRACT_EXAMPLE, "status": status, "usage": usage})
    assert task.credits == credits


def test_failed_task_carries_its_error() -> None:
    task = ProviderTask.model_validate(
        {
            **CONTRACT_EXAMPLE,
            "status": "failed",
            "error": {"code": "content_policy_violation", "message": "no", "type": "content_policy_error"},
        }
    )
    assert task.is_terminal and task.error is not None and task.error.code == "content_policy_violation"


def test_numeric_or_null_fields_do_not_make_a_task_unreadable() -> None:
    # Unreadable would surface as ResponseLostError: an ambiguous failure for a fine answer.
    task = ProviderTask.model_validate(
        {**CONTRACT_EXAMPLE, "status": "failed", "progress": None, "error": {"code": 500, "message": None}}
    )
    assert task.progress == 0 and task.error is not None
    assert (task.error.code, task.error.message) == ("500", "")
    assert ProviderTask.model_validate({**CONTRACT_EXAMPLE, "error": {"code": None}}).error == TaskError()


def test_error_envelope_parses() -> None:
    body = '{"error": {"code": 400, "message": "bad duration", "type": "invalid_request_error", "param": "duration"}}'
    error = ErrorEnvelope.model_validate_json(body).error
    assert (error.code, error.type, error.param) == (400, "invalid_request_error", "duration")


async def test_client_refuses_a_bad_request_before_sending_it() -> None:
    # Port 9 on loopback: nothing listens, so reaching the network would fail differently.
    async with GPTImage2Client("key", "https://127.0.0.1:9") as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.create_task({"prompt": "a cat", "duration": 30})
    assert caught.value.param == "duration"


@pytest.mark.parametrize("task_id", ["", "a/b", "..", "."])
async def test_client_refuses_task_ids_that_would_change_the_path(task_id: str) -> None:
    async with GPTImage2Client("key", "https://127.0.0.1:9") as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.get_task(task_id)
    assert caught.value.param == "task_id"


async def test_transport_failures_never_escape_as_raw_httpx_errors() -> None:
    # A base URL the transport cannot use fails before sending: a safe, typed connection error.
    async with GPTImage2Client("key", "gopher://127.0.0.1:9") as client:
        with pytest.raises(APIConnectionError):
            await client.get_task("task-unified-1-00000000")


def test_client_repr_never_shows_the_key() -> None:
    client = GPTImage2Client("super-secret-key", "https://127.0.0.1:9")
    assert "super-secret-key" not in repr(client)
