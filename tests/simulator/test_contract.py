"""The simulator serves docs/provider-contract.md: auth, every validation rule with its `param`,
the task object, each status path, cancel and credits. Through the real GPTImage2Client over
HTTPS, or raw httpx where the client would refuse the request itself."""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gptimage2 import (
    AuthenticationError,
    BadRequestError,
    CancelNotSupportedError,
    FailureCategory,
    GPTImage2Client,
    InvalidRequestError,
    NotFoundError,
    ProviderTask,
    TaskStatus,
    classify_task_error,
)
from simulator.testing import SimulatorHandle, running_simulator

TASK_ID = re.compile(r"^task-unified-\d{10}-[0-9a-f]{8}$")
LONG = 100_000  # simulated seconds: a task that will not end unless the clock is advanced


@pytest.fixture(scope="module")
def strict_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorHandle]:
    """As the real provider: private callback and image hosts refused."""
    with running_simulator(
        time_scale=1000, allow_private=False, cache_dir=tmp_path_factory.mktemp("videos")
    ) as handle:
        yield handle


@pytest.fixture
async def raw(sim: SimulatorHandle) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    async with httpx.AsyncClient(base_url=sim.base_url, verify=sim.ssl_context(), headers=headers) as http:
        yield http


def unique(prompt: str) -> str:
    """A prompt no other test uses: per-prompt directives and counters stay this test's own."""
    return f"{prompt} [{uuid.uuid4().hex[:8]}]"


def small(prompt: str, /, **fields: Any) -> dict[str, Any]:
    return {
        "model": "seedance-1.5-pro",
        "prompt": unique(prompt),
        "duration": 4,
        "quality": "480p",
        "generate_audio": False,
        **fields,
    }


def assert_invalid(response: httpx.Response, param: str | None) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"]


# -- auth and shape ---------------------------------------------------------------------------------
async def test_create_answers_at_once_with_the_contract_task_object(client: GPTImage2Client) -> None:
    task = await client.create_task({"prompt": unique("A detective in the rain #gen=600"), "duration": 8})
    assert TASK_ID.match(task.id)
    assert (task.object, task.type, task.model) == ("video.generation.task", "video", "seedance-1.5-pro")
    assert task.known_status is TaskStatus.PENDING and task.progress == 0
    assert task.task_info is not None and task.task_info.can_cancel is True
    assert task.task_info.video_duration == 8 and task.task_info.estimated_time == 600
    # 8 s of 720p with audio reserves 50 credits, as in the contract's example.
    assert task.usage is not None and task.usage.billing_rule == "per_second"
    assert task.usage.credits_reserved == 50 and task.usage.user_group == "default"
    assert task.created is not None and str(task.created) in task.id


async def test_task_ids_are_unique(client: GPTImage2Client) -> None:
    ids = {(await client.create_task(small("id check #gen=1"))).id for _ in range(20)}
    assert len(ids) == 20


async def test_requests_without_the_bearer_key_are_401(sim: SimulatorHandle) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url, verify=sim.ssl_context()) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic c2ltOmtleQ=="}):
            response = await http.post("/v1/videos/generations", json=small("auth"), headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"
            assert (await http.get("/v1/tasks/task-unified-1-00000000", headers=headers)).status_code == 401
    async with GPTImage2Client("not-the-key", sim.base_url, verify=sim.ssl_context()) as wrong:
        with pytest.raises(AuthenticationError):
            await wrong.create_task(small("auth"))


async def test_unknown_task_is_404(client: GPTImage2Client) -> None:
    with pytest.raises(NotFoundError):
        await client.get_task("task-unified-1761313744-deadbeef")


async def test_unknown_route_answers_with_the_envelope(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


# -- validation --------------------------------------------------------------------------------------
BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"model": "sora-2"}, "model"),
    ({"model": 5}, "model"),
    ({"model": None, "_drop": "model"}, "model"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": "x" * 8001}, "prompt"),
    ({"prompt": "word " * 2001}, "prompt"),
    ({"_drop": "prompt"}, "prompt"),
    ({"duration": "5"}, "duration"),
    ({"duration": 5.5}, "duration"),
    ({"duration": 5.0}, "duration"),
    ({"duration": True}, "duration"),
    ({"duration": 3}, "duration"),
    ({"duration": 13}, "duration"),
    ({"quality": "1080p"}, "quality"),
    ({"aspect_ratio": "2:1"}, "aspect_ratio"),
    ({"generate_audio": "true"}, "generate_audio"),
    ({"generate_audio": 1}, "generate_audio"),
    ({"image_urls": "https://cdn.example.com/a.png"}, "image_urls"),
    ({"image_urls": ["https://cdn.example.com/a.png"] * 3}, "image_urls"),
    ({"image_urls": ["ftp://cdn.example.com/a.png"]}, "image_urls"),
    ({"image_urls": [7]}, "image_urls"),
    ({"callback_url": "http://hooks.example.com/cb"}, "callback_url"),
    ({"callback_url": "https://hooks.example.com/" + "a" * 2048}, "callback_url"),
    ({"callback_url": 12}, "callback_url"),
]


@pytest.mark.parametrize(
    ("fields", "param"), BAD_FIELDS, ids=[f"{p}-{i}" for i, (_, p) in enumerate(BAD_FIELDS)]
)
async def test_each_rule_is_a_400_naming_the_field(
    raw: httpx.AsyncClient, sim: SimulatorHandle, fields: dict[str, Any], param: str
) -> None:
    body = small("validation", **fields)
    body.pop(body.pop("_drop", "_none"), None)
    before = (await sim.astats())["tasks_created"]
    assert_invalid(await raw.post("/v1/videos/generations", json=body), param)
    after = await sim.astats()
    assert after["tasks_created"] == before and after["creates_rejected"] >= 1


@pytest.mark.parametrize("image", ["big.png", "fake.png", "missing.png"])
async def test_images_too_big_not_images_or_missing_are_refused(
    raw: httpx.AsyncClient, sim: SimulatorHandle, image: str
) -> None:
    body = small("image check", image_urls=[sim.image_url(image)])
    assert_invalid(await raw.post("/v1/videos/generations", json=body), "image_urls")


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port bound then released, never listened on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


async def test_unreachable_image_is_refused(raw: httpx.AsyncClient) -> None:
    with closed_port() as port:
        body = small("unreachable", image_urls=[f"https://127.0.0.1:{port}/a.png"])
        assert_invalid(await raw.post("/v1/videos/generations", json=body), "image_urls")


@pytest.mark.parametrize("images", [["sample.png"], ["sample.jpg", "sample.webp"]])
async def test_real_images_are_accepted(
    client: GPTImage2Client, sim: SimulatorHandle, images: list[str]
) -> None:
    # One image: image-to-video; two: first and last frame. jpg, png and webp all pass.
    request = small("from images #gen=5", image_urls=[sim.image_url(name) for name in images])
    assert TASK_ID.match((await client.create_task(request)).id)


async def test_unknown_extra_fields_are_ignored(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        "/v1/videos/generations", json={**small("extra #gen=1"), "seed": 7, "style": "noir"}
    )
    assert response.status_code == 200 and TASK_ID.match(response.json()["id"])


async def test_unparseable_json_is_400(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        "/v1/videos/generations", content=b'{"prompt": "a cat",', headers={"Content-Type": "application/json"}
    )
    assert_invalid(response, None)
    assert_invalid(await raw.post("/v1/videos/generations", json=["not", "an", "object"]), None)


async def test_body_over_1_mib_is_413(raw: httpx.AsyncClient) -> None:
    body = b'{"prompt": "' + b"x" * (1024 * 1024) + b'"}'
    response = await raw.post("/v1/videos/generations", content=body)
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large_error"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to check up front
        for _ in range(3):
            yield b"x" * (512 * 1024)

    response = await raw.post("/v1/videos/generations", content=chunked())
    assert response.status_code == 413


async def test_client_validation_stops_bad_requests_before_the_wire(
    client: GPTImage2Client, sim: SimulatorHandle
) -> None:
    before = await sim.astats()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"duration": 30}, "duration"),
        ({"callback_url": "http://x.example/cb"}, "callback_url"),
    ]
    for fields, param in cases:
        with pytest.raises(InvalidRequestError) as caught:
            await client.create_task(small("client side", **fields))
        assert caught.value.param == param
    after = await sim.astats()
    assert (after["tasks_created"], after["creates_rejected"]) == (
        before["tasks_created"],
        before["creates_rejected"],
    )


CALLBACK_HOSTS = [
    "127.0.0.1",
    "localhost",
    "10.0.0.5",
    "192.168.1.20",
    "169.254.169.254",
    "[::1]",
    "2130706433",
]


@pytest.mark.parametrize("host", CALLBACK_HOSTS)
async def test_private_callback_hosts_are_refused(strict_sim: SimulatorHandle, host: str) -> None:
    async with strict_sim.client() as strict:
        with pytest.raises(BadRequestError) as caught:
            await strict.create_task(small("private", callback_url=f"https://{host}:8443/cb"))
    # "2130706433" is 127.0.0.1 spelled as one number: only resolving it reveals that.
    assert caught.value.param == "callback_url" and caught.value.error_type == "invalid_request_error"


async def test_private_image_hosts_are_refused(strict_sim: SimulatorHandle) -> None:
    async with strict_sim.client() as strict:
        with pytest.raises(BadRequestError) as caught:
            await strict.create_task(small("private image", image_urls=[strict_sim.image_url("sample.png")]))
    assert caught.value.param == "image_urls"


async def test_public_callback_host_is_accepted(strict_sim: SimulatorHandle) -> None:
    async with strict_sim.client() as strict:
        task = await strict.create_task(small("public #gen=1", callback_url="https://hooks.example.com/cb"))
    assert TASK_ID.match(task.id)


# -- lifecycle ------------------------------------------------------------------------------------------
async def test_completed_path_progress_rises_to_100_with_results_and_charge(
    client: GPTImage2Client, sim: SimulatorHandle
) -> None:
    created = await client.create_task(small(f"lifecycle #gen={LONG}"))
    assert created.known_status is TaskStatus.PENDING
    # 10 % of the time is queueing; half-way through generation it is processing at ~50 %.
    await sim.aadvance_clock(0.1 * LONG + 0.45 * LONG)
    midway = await client.get_task(created.id)
    assert midway.known_status is TaskStatus.PROCESSING and 40 <= midway.progress <= 60
    assert midway.task_info is not None and midway.task_info.can_cancel
    await sim.aadvance_clock(0.5 * LONG)
    done = await client.get_task(created.id)
    assert done.known_status is TaskStatus.COMPLETED and done.progress == 100
    assert done.results and len(done.results) == 1 and done.results[0].startswith(f"{sim.base_url}/results/")
    assert done.usage is not None and done.usage.credits_charged == done.usage.credits_reserved == 12
    assert done.task_info is not None and done.task_info.can_cancel is False
    assert done.completed_at is not None and done.created is not None and done.completed_at >= done.created
    assert done.error is None and done.credits == 12


async def test_transient_failure_path(client: GPTImage2Client, sim: SimulatorHandle) -> None:
    task = await client.create_task(small("flaky #fail=service_error #gen=5"))
    await sim.await_(task_id=task.id)
    failed = await client.get_task(task.id)
    assert failed.known_status is TaskStatus.FAILED and failed.results is None
    assert failed.error is not None and failed.error.code == "service_error" and failed.error.message
    assert failed.usage is not None and failed.usage.credits_refunded == failed.usage.credits_reserved
    assert failed.credits == 0
    assert classify_task_error(failed.error.code).retryable


async def test_fail_first_n_then_complete(client: GPTImage2Client, sim: SimulatorHandle) -> None:
    prompt = unique("twice #fail=generation_timeoutx2 #gen=5")
    statuses = []
    for _ in range(3):
        task = await client.create_task(small("", prompt=prompt))
        await sim.await_(task_id=task.id)
        statuses.append((await client.get_task(task.id)).status)
    assert statuses == ["failed", "failed", "completed"]


async def test_policy_failure_arrives_late(client: GPTImage2Client, sim: SimulatorHandle) -> None:
    task = await client.create_task(small(f"forbidden #policy #gen={LONG}"))
    # Half-way through generation moderation has not spoken yet: still processing.
    await sim.aadvance_clock(0.1 * LONG + 0.45 * LONG)
    assert (await client.get_task(task.id)).known_status is TaskStatus.PROCESSING
    await sim.aadvance_clock(0.45 * LONG)
    failed = await client.get_task(task.id)
    assert failed.known_status is TaskStatus.FAILED
    assert failed.error is not None and failed.error.code == "content_policy_violation"
    assert 50 <= failed.progress <= 70  # "failed after processing", at about 60 %
    assert classify_task_error(failed.error.code).category is FailureCategory.POLICY


async def test_cancel_refunds_and_a_second_cancel_is_refused(
    client: GPTImage2Client, sim: SimulatorHandle
) -> None:
    task = await client.create_task(small(f"cancel me #gen={LONG}"))
    before = await sim.astats()
    cancelled = await client.cancel_task(task.id)
    assert cancelled.known_status is TaskStatus.CANCELLED and cancelled.is_terminal
    assert (
        cancelled.usage is not None and cancelled.usage.credits_refunded == cancelled.usage.credits_reserved
    )
    assert cancelled.error is not None and cancelled.error.code == "request_cancelled"
    assert (await client.get_task(task.id)).known_status is TaskStatus.CANCELLED
    after = await sim.astats()
    assert after["credits_refunded"] - before["credits_refunded"] == cancelled.usage.credits_reserved
    with pytest.raises(CancelNotSupportedError):  # terminal -> 409
        await client.cancel_task(task.id)
    with pytest.raises(CancelNotSupportedError):  # unknown -> 404
        await client.cancel_task("task-unified-1761313744-00000000")


async def test_completed_task_cannot_be_cancelled(client: GPTImage2Client, sim: SimulatorHandle) -> None:
    task = await client.create_task(small("done #gen=1"))
    await sim.await_(task_id=task.id)
    with pytest.raises(CancelNotSupportedError):
        await client.cancel_task(task.id)
    assert (await client.get_task(task.id)).known_status is TaskStatus.COMPLETED


async def test_task_list_names_prompt_hashes(client: GPTImage2Client, sim: SimulatorHandle) -> None:
    prompt = unique("listed #gen=1")
    task = await client.create_task(small("", prompt=prompt))
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    listed = await sim.atasks(digest)
    assert [entry["id"] for entry in listed] == [task.id] and listed[0]["callback_url"] is None


async def test_credit_counters_add_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    async with running_simulator(time_scale=1000, cache_dir=tmp_path_factory.mktemp("v")) as own:
        async with own.client() as provider:
            done = await provider.create_task(
                small("ok #gen=1", duration=8, quality="720p", generate_audio=True)
            )
            failed = await provider.create_task(small("bad #fail=quota_exceeded #gen=1", duration=6))
            cancelled = await provider.create_task(small(f"stop #gen={LONG}", duration=5, quality="720p"))
            await provider.cancel_task(cancelled.id)
            for task in (done, failed):
                await own.await_(task_id=task.id)
        stats = await own.astats()
    # 8 s 720p + audio = 50; 6 s 480p silent = 18; 5 s 720p silent = 25.
    assert stats["credits_reserved"] == 50 + 18 + 25
    assert stats["credits_charged"] == 50
    assert stats["credits_refunded"] == 18 + 25
    assert stats["credits_reserved"] == stats["credits_charged"] + stats["credits_refunded"]
    assert stats["tasks_created"] == 3 and stats["cancels"] == 1


async def test_get_reflects_the_same_object_as_create(client: GPTImage2Client) -> None:
    created = await client.create_task(small(f"same #gen={LONG}"))
    fetched = await client.get_task(created.id)
    assert ProviderTask.model_validate(fetched.model_dump()).id == created.id
    assert fetched.usage == created.usage and fetched.model == created.model


async def test_credits_used_grow_by_each_charge_and_holds_leave_the_remaining(tmp_path: Path) -> None:
    """`GET /v1/credits` (the gateway's account API): the key's used credits are what completed
    tasks were charged; a running task's reservation is held out of the remaining credits, a
    failed one's is returned. A simulator of its own: no other test's task settles meanwhile."""
    with running_simulator(time_scale=1000, cache_dir=tmp_path) as sim:
        async with sim.client() as client:
            before = await client.get_credits()
            assert (before.used_credits, before.remaining_credits, before.unlimited_credits) == (
                0,
                1_000_000,
                False,
            )
            running = await client.create_task(small(f"held #gen={LONG}"))
            failed = await client.create_task(small("refunded #fail=service_error #gen=5"))
            await sim.await_(task_id=failed.id)
            holding = await client.get_credits()
            assert (holding.used_credits, holding.remaining_credits) == (0, 1_000_000 - 12)
            await sim.aadvance_clock(LONG)
            await sim.await_(task_id=running.id)
            after = await client.get_credits()
            assert (after.used_credits, after.remaining_credits) == (12, 1_000_000 - 12)
        async with httpx.AsyncClient(base_url=sim.base_url, verify=sim.ssl_context()) as http:
            assert (await http.get("/v1/credits")).status_code == 401
