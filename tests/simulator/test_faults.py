"""Injected faults, observed through the real client: HTTP errors on create and GET, tasks the
provider forgets or refuses, the lost create response, slow / truncated / ranged downloads, link
expiry, and the fault config API."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from devstack.ports import free_port
from gptimage2 import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    CancelNotSupportedError,
    CreateRetry,
    GPTImage2Client,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseLostError,
    ServiceUnavailableError,
    TaskStatus,
    UpstreamError,
    classify_exception,
)
from simulator.testing import SimulatorError, SimulatorHandle, running_callback_receiver, running_simulator


@pytest.fixture(autouse=True)
def default_faults(sim: SimulatorHandle) -> Iterator[None]:
    """Each test starts from, and leaves behind, the default (fault-free) config."""
    sim.reset_config()
    yield
    sim.reset_config()


@pytest.fixture
async def http(sim: SimulatorHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=sim.ssl_context()) as plain:
        yield plain


def small(prompt: str) -> dict[str, Any]:
    return {
        "prompt": f"{prompt} [{uuid.uuid4().hex[:8]}]",
        "duration": 4,
        "quality": "480p",
        "generate_audio": False,
    }


async def completed(client: GPTImage2Client, sim: SimulatorHandle, prompt: str) -> str:
    """Creates a task, waits for its end, returns its result URL."""
    task = await client.create_task(small(f"{prompt} #gen=5"))
    await sim.await_(task_id=task.id)
    done = await client.get_task(task.id)
    assert done.known_status is TaskStatus.COMPLETED and done.results
    return done.results[0]


# -- HTTP faults -----------------------------------------------------------------------------------------
async def test_429_carries_retry_after_and_creates_nothing(
    client: GPTImage2Client, sim: SimulatorHandle
) -> None:
    await sim.aset_config(create_error_rate=1.0, create_error_statuses=[429], retry_after_seconds=7)
    before = await sim.astats()
    with pytest.raises(RateLimitError) as caught:
        await client.create_task(small("limited"))
    assert caught.value.retry_after == 7 and caught.value.error_type == "rate_limit_error"
    assert classify_exception(caught.value).create_retry is CreateRetry.SAFE
    after = await sim.astats()
    assert after["tasks_created"] == before["tasks_created"]
    assert after["http_faults_injected"] == before["http_faults_injected"] + 1


@pytest.mark.parametrize(
    ("status", "error", "creates_task", "create_retry"),
    [
        # A task was made: the answer comes bare (a proxy's page), so nothing says it was not.
        (500, InternalServerError, 1.0, CreateRetry.AMBIGUOUS),
        (502, UpstreamError, 1.0, CreateRetry.AMBIGUOUS),
        # No task: the gateway's own envelope says it answered, so a retry cannot bill twice.
        (500, InternalServerError, 0.0, CreateRetry.SAFE),
        (502, UpstreamError, 0.0, CreateRetry.SAFE),
        (503, ServiceUnavailableError, 1.0, CreateRetry.SAFE),  # 503: before processing, never a task
    ],
)
async def test_5xx_on_create_is_classified(
    client: GPTImage2Client,
    sim: SimulatorHandle,
    status: int,
    error: type[APIStatusError],
    creates_task: float,
    create_retry: CreateRetry,
) -> None:
    await sim.aset_config(
        create_error_rate=1.0, create_error_statuses=[status], create_error_creates_task=creates_task
    )
    request = small(f"server error {status}")
    before = await sim.astats()
    with pytest.raises(error) as caught:
        await client.create_task(request)
    verdict = classify_exception(caught.value)
    assert verdict.retryable and verdict.create_retry is create_retry
    orphans = await sim.atasks(hashlib.sha256(request["prompt"].encode()).hexdigest())
    # A 500/502 after the task was made leaves an orphan; that is why such a create is ambiguous.
    assert len(orphans) == (1 if create_retry is CreateRetry.AMBIGUOUS else 0)
    assert caught.value.from_gateway is (create_retry is CreateRetry.SAFE)
    assert (await sim.astats())["tasks_created"] == before["tasks_created"] + len(orphans)


async def test_get_errors_are_injected_and_classified(client: GPTImage2Client, sim: SimulatorHandle) -> None:
    task = await client.create_task(small("polled"))
    await sim.aset_config(get_error_rate=1.0, get_error_statuses=[502])
    with pytest.raises(UpstreamError) as caught:
        await client.get_task(task.id)
    assert classify_exception(caught.value).retryable
    await sim.aset_config(get_error_rate=0.0)
    assert (await client.get_task(task.id)).id == task.id


# -- task loss: a purge or restart (forgotten), a revoked key or account (refused) ----------------------
async def test_a_forgotten_task_is_404_everywhere_and_never_calls_back(
    client: GPTImage2Client, sim: SimulatorHandle
) -> None:
    assert sim.ca is not None
    async with running_callback_receiver(sim.ca) as receiver:
        kept = await client.create_task({**small("kept #gen=5"), "callback_url": receiver.url("kept")})
        gone = await client.create_task({**small("gone #gen=5"), "callback_url": receiver.url("gone")})
        await sim.aforget_task(gone.id)
        with pytest.raises(NotFoundError) as caught:
            await client.get_task(gone.id)
        assert not classify_exception(caught.value).retryable
        with pytest.raises(CancelNotSupportedError, match="task not found"):
            await client.cancel_task(gone.id)  # the client's reading of a 404 on cancel
        # The clock passes both tasks' ends: the kept one settles and calls back, the other never.
        await sim.aadvance_clock(60)
        await sim.await_(task_id=kept.id)
        await receiver.await_for(1, path="kept")
        assert (await client.get_task(kept.id)).known_status is TaskStatus.COMPLETED
        assert not receiver.deliveries("gone")
    async with httpx.AsyncClient(verify=sim.ssl_context()) as http:
        result = await http.get(f"{sim.base_url}/results/{gone.id}/0.mp4")
    assert result.status_code == 404
    assert gone.id not in {task["id"] for task in await sim.atasks()}
    with pytest.raises(SimulatorError, match="404"):
        await sim.aforget_task(gone.id)  # forgetting twice: unknown now


@pytest.mark.parametrize(("status", "error"), [(401, AuthenticationError), (403, PermissionDeniedError)])
async def test_a_refused_task_answers_its_status_and_others_do_not(
    client: GPTImage2Client, sim: SimulatorHandle, status: int, error: type[APIStatusError]
) -> None:
    refused = await client.create_task(small("refused #gen=500"))
    other = await client.create_task(small("other #gen=500"))
    await sim.arefuse_task(refused.id, status)
    with pytest.raises(error) as caught:
        await client.get_task(refused.id)
    assert caught.value.status_code == status and not classify_exception(caught.value).retryable
    with pytest.raises(error):
        await client.cancel_task(refused.id)
    assert (await client.get_task(other.id)).id == other.id


def test_refuse_names_the_bad_field(sim: SimulatorHandle) -> None:
    with pytest.raises(SimulatorError, match="status"):
        sim.refuse_task("task-unified-0-00000000", 500)
    with pytest.raises(SimulatorError, match="404"):
        sim.refuse_task("task-unified-0-00000000", 401)


async def test_lost_response_directive_creates_the_task_and_drops_the_answer(
    client: GPTImage2Client, sim: SimulatorHandle
) -> None:
    request = small("orphan #lost-response #gen=5")
    before = await sim.astats()
    with pytest.raises(ResponseLostError) as caught:
        await client.create_task(request)
    assert classify_exception(caught.value).create_retry is CreateRetry.AMBIGUOUS
    digest = hashlib.sha256(request["prompt"].encode()).hexdigest()
    orphans = await sim.atasks(digest)
    assert len(orphans) == 1  # the task really exists: the reconciler must find it
    # Only the first create with this exact prompt loses its answer.
    retried = await client.create_task(request)
    assert retried.id != orphans[0]["id"]
    assert [entry["id"] for entry in await sim.atasks(digest)] == [orphans[0]["id"], retried.id]
    after = await sim.astats()
    assert after["responses_lost"] == before["responses_lost"] + 1
    assert after["tasks_created"] == before["tasks_created"] + 2


async def test_lost_response_rate(client: GPTImage2Client, sim: SimulatorHandle) -> None:
    await sim.aset_config(create_response_lost_rate=1.0)
    with pytest.raises(ResponseLostError):
        await client.create_task(small("lost by rate"))


async def test_policy_and_transient_rates(client: GPTImage2Client, sim: SimulatorHandle) -> None:
    await sim.aset_config(policy_rate=1.0)
    policy = await client.create_task(small("innocent #gen=5"))
    await sim.aset_config(policy_rate=0.0, transient_rate=1.0, transient_codes=["quota_exceeded"])
    transient = await client.create_task(small("unlucky #gen=5"))
    for task, code in ((policy, "content_policy_violation"), (transient, "quota_exceeded")):
        await sim.await_(task_id=task.id)
        failed = await client.get_task(task.id)
        assert (
            failed.known_status is TaskStatus.FAILED
            and failed.error is not None
            and failed.error.code == code
        )


async def test_generation_time_override(client: GPTImage2Client, sim: SimulatorHandle) -> None:
    await sim.aset_config(generation_time_seconds=42)
    task = await client.create_task(small("fixed time"))
    assert task.task_info is not None and task.task_info.estimated_time == 42


# -- the config surface ----------------------------------------------------------------------------------
def test_config_patch_merges_and_rejects_unknown_keys(sim: SimulatorHandle) -> None:
    merged = sim.set_config(callback_drop_rate=0.25)
    assert merged["callback_drop_rate"] == 0.25 and merged["policy_keyword"] == "#policy"
    assert sim.set_config(get_error_rate=0.5)["callback_drop_rate"] == 0.25
    with pytest.raises(SimulatorError, match="no_such_knob"):
        sim.set_config(no_such_knob=1)
    with pytest.raises(SimulatorError, match="policy_rate"):
        sim.set_config(policy_rate=1.5)
    with pytest.raises(SimulatorError, match="create_error_statuses"):
        sim.set_config(create_error_statuses=[418])
    assert sim.reset_config()["callback_drop_rate"] == 0.0  # PUT replaces: defaults again


# -- downloads ---------------------------------------------------------------------------------------------
async def test_truncated_download_stops_half_way(
    client: GPTImage2Client, sim: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    url = await completed(client, sim, "cut short #truncate")
    received = 0
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream("GET", url) as response:
            declared = int(response.headers["content-length"])
            async for chunk in response.aiter_raw():
                received += len(chunk)
    assert 0 < received < declared


async def test_truncate_rate_applies_to_any_download(
    client: GPTImage2Client, sim: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    url = await completed(client, sim, "fine")
    await sim.aset_config(download_truncate_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(url)
    await sim.aset_config(download_truncate_rate=0.0)
    assert (await http.get(url)).status_code == 200


async def test_slow_download_is_paced(
    client: GPTImage2Client, sim: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    url = await completed(client, sim, "slow #size=300000")
    rate = 1_000_000
    await sim.aset_config(download_bytes_per_second=rate)
    started = time.monotonic()
    response = await http.get(url)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and len(response.content) == 300_000
    # A lower bound only: pacing guarantees it, a slow machine can only add to it. The last
    # piece (rate / 10 bytes) may arrive before its pause.
    assert elapsed >= (300_000 - rate / 10) / rate


async def test_rate_directive_paces_only_its_own_task(
    client: GPTImage2Client, sim: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    slow = await completed(client, sim, "slow by directive #size=300000 #rate=1m")
    fast = await completed(client, sim, "not slowed #size=300000")
    started = time.monotonic()
    assert len((await http.get(slow)).content) == 300_000
    slow_seconds = time.monotonic() - started
    started = time.monotonic()
    assert len((await http.get(fast)).content) == 300_000
    fast_seconds = time.monotonic() - started
    assert slow_seconds >= (300_000 - 100_000) / 1_000_000 > fast_seconds


async def test_bytes_served_are_counted_per_result(
    client: GPTImage2Client, sim: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    url = await completed(client, sim, "counted #size=200000")
    task_id = url.split("/results/")[1].split("/")[0]
    before = (await sim.astats())["download_bytes_served"]
    await http.get(url)
    resumed = await http.get(url, headers={"Range": "bytes=150000-"})
    assert resumed.status_code == 206 and resumed.headers["content-range"] == "bytes 150000-199999/200000"
    await http.head(url)  # a HEAD sends no body
    [task] = [t for t in await sim.atasks() if t["id"] == task_id]
    assert task["bytes_served"] == 250_000
    assert (await sim.astats())["download_bytes_served"] - before == 250_000


async def test_a_download_the_client_abandons_stops_counting(
    client: GPTImage2Client, sim: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    url = await completed(client, sim, "abandoned #size=1000000 #rate=1m")
    task_id = url.split("/results/")[1].split("/")[0]
    async with http.stream("GET", url) as response:
        async for _ in response.aiter_bytes(100_000):
            break  # leave after the first piece: the connection closes
    # A second whole download, paced the same, ends after the first would have.
    assert len((await http.get(url)).content) == 1_000_000
    [task] = [t for t in await sim.atasks() if t["id"] == task_id]
    assert 1_000_000 < task["bytes_served"] < 1_500_000


async def test_cut_stops_only_the_first_download_and_norange_ignores_range(
    client: GPTImage2Client, sim: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    url = await completed(client, sim, "cut once #size=200000 #cut=50000")
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(url)
    assert len((await http.get(url)).content) == 200_000
    stubborn = await completed(client, sim, "ignores ranges #size=200000 #norange")
    whole = await http.get(stubborn, headers={"Range": "bytes=150000-"})
    assert whole.status_code == 200 and len(whole.content) == 200_000


async def test_range_requests_serve_the_same_bytes(
    client: GPTImage2Client, sim: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    url = await completed(client, sim, "ranged #size=200000")
    whole = (await http.get(url)).content
    part = await http.get(url, headers={"Range": "bytes=1000-150999"})
    assert part.status_code == 206 and part.headers["content-range"] == "bytes 1000-150999/200000"
    assert part.content == whole[1000:151000]
    tail = await http.get(url, headers={"Range": "bytes=-500"})
    assert tail.content == whole[-500:]
    assert (await http.get(url, headers={"Range": "bytes=999999-"})).status_code == 416
    head = await http.head(url)
    assert head.headers["content-length"] == "200000" and head.content == b""


async def test_results_need_no_auth_but_unknown_ones_are_404(
    client: GPTImage2Client, sim: SimulatorHandle, http: httpx.AsyncClient
) -> None:
    url = await completed(client, sim, "public link")
    response = await http.get(url)  # no Authorization header, as with a CDN link
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    assert (await http.get(url.replace("/0.mp4", "/1.mp4"))).status_code == 404
    running = await client.create_task(small("not yet #gen=100000"))
    assert (await http.get(f"{sim.base_url}/results/{running.id}/0.mp4")).status_code == 404


async def test_links_expire_24_hours_after_completion(tmp_path_factory: pytest.TempPathFactory) -> None:
    async with running_simulator(time_scale=1000, cache_dir=tmp_path_factory.mktemp("v")) as own:
        async with own.client() as provider, httpx.AsyncClient(verify=own.ssl_context()) as plain:
            url = await completed(provider, own, "expiring")
            assert (await plain.get(url)).status_code == 200
            await own.aadvance_clock(23 * 3600)
            assert (await plain.head(url)).status_code == 200
            await own.aadvance_clock(3600)
            expired = await plain.get(url)
            assert expired.status_code == 403 and b"expired" in expired.content
            stats = await own.astats()
    assert stats["downloads_served"] == 1  # a HEAD is not a download; a 403 serves nothing


async def test_an_answer_slower_than_the_read_timeout_is_ambiguous(sim: SimulatorHandle) -> None:
    # The task exists when the client stops waiting: the create must not count as never sent.
    async with sim.client(timeout=aiohttp.ClientTimeout(sock_read=0.2)) as impatient:
        with pytest.raises(APITimeoutError) as caught:
            await impatient.create_task(small("slow #slow-answer=1 #gen=5"))
    assert classify_exception(caught.value).create_retry is CreateRetry.AMBIGUOUS


async def test_a_refused_connection_is_surely_not_sent() -> None:
    async with GPTImage2Client("key", f"https://127.0.0.1:{free_port()}") as nobody:
        with pytest.raises(APIConnectionError) as caught:
            await nobody.create_task(small("never sent"))
    assert classify_exception(caught.value).create_retry is CreateRetry.SAFE
