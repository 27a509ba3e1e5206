"""Callbacks as the contract describes them, received by a real HTTPS endpoint: terminal states
only, body = the task object, at most 3 retries after 1/2/4 s (scaled down here), and the faults
a receiver must survive: dropped, duplicated, delayed and reordered deliveries."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trustme

from gptimage2 import GPTImage2Client, InvalidRequestError, ProviderTask, TaskStatus
from simulator.testing import CallbackReceiver, SimulatorHandle, running_callback_receiver, running_simulator

BACKOFF_SCALE = 0.02  # retries after 20, 40 and 80 ms instead of 1, 2 and 4 s
LONG = 100_000


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def receiver(ca: trustme.CA) -> Iterator[CallbackReceiver]:
    with running_callback_receiver(ca) as running:
        yield running


@pytest.fixture(scope="module")
def sim(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorHandle]:
    config = {"callback_backoff_scale": BACKOFF_SCALE}
    with running_simulator(
        time_scale=1000, ca=ca, config=config, cache_dir=tmp_path_factory.mktemp("videos")
    ) as handle:
        yield handle


@pytest.fixture(autouse=True)
def default_faults(sim: SimulatorHandle) -> Iterator[None]:
    sim.reset_config({"callback_backoff_scale": BACKOFF_SCALE})
    yield
    sim.reset_config({"callback_backoff_scale": BACKOFF_SCALE})


def path() -> str:
    """A callback path of this test's own (the receiver is shared by the module)."""
    return f"cb/{uuid.uuid4().hex}"


def request(receiver: CallbackReceiver, where: str, prompt: str, **fields: Any) -> dict[str, Any]:
    return {
        "prompt": f"{prompt} [{uuid.uuid4().hex[:8]}]",
        "duration": 4,
        "quality": "480p",
        "generate_audio": False,
        "callback_url": receiver.url(where),
        **fields,
    }


async def test_completed_task_calls_back_once_with_the_task_object(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    where = path()
    task = await client.create_task(request(receiver, where, "a calm sea #gen=5"))
    [delivery] = await receiver.await_for(1, where)
    body = ProviderTask.model_validate_json(delivery.body)
    assert body.known_status is TaskStatus.COMPLETED and body.results
    # Sent after billing is settled, and the same object a GET returns.
    assert body.usage is not None and body.usage.credits_charged == body.usage.credits_reserved
    assert body == await client.get_task(task.id)
    [listed] = [entry for entry in await sim.atasks() if entry["id"] == task.id]
    assert (listed["callback_attempts"], listed["callback_deliveries"]) == (1, 1)


async def test_failed_and_cancelled_tasks_call_back_too(
    client: GPTImage2Client, receiver: CallbackReceiver
) -> None:
    failed_at, cancelled_at = path(), path()
    await client.create_task(request(receiver, failed_at, "broken #fail=service_error #gen=5"))
    running = await client.create_task(request(receiver, cancelled_at, f"stopped #gen={LONG}"))
    await client.cancel_task(running.id)
    [failed] = await receiver.await_for(1, failed_at)
    [cancelled] = await receiver.await_for(1, cancelled_at)
    assert failed.json()["status"] == "failed" and failed.json()["error"]["code"] == "service_error"
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["id"] == running.id


async def test_running_tasks_never_call_back(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    where = path()
    task = await client.create_task(request(receiver, where, f"slow #gen={LONG}"))
    await sim.aadvance_clock(0.5 * LONG)  # deep into processing: still no callback
    assert (await client.get_task(task.id)).known_status is TaskStatus.PROCESSING
    await sim.aadvance_clock(0.5 * LONG)
    deliveries = await receiver.await_for(1, where)
    assert [d.json()["status"] for d in deliveries] == ["completed"]


async def test_failing_receiver_gets_retries_until_a_2xx(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    where = path()
    receiver.program(where, [500, 502])
    before = await sim.astats()
    task = await client.create_task(request(receiver, where, "retry me #gen=5"))
    attempts = await receiver.await_for(3, where)
    assert [a.status for a in attempts] == [500, 502, 200]
    # Backoff 1 s then 2 s, scaled: lower bounds only (a busy machine can only add delay).
    assert attempts[1].received_at - attempts[0].received_at >= 1 * BACKOFF_SCALE
    assert attempts[2].received_at - attempts[1].received_at >= 2 * BACKOFF_SCALE
    after = await sim.await_(task_id=task.id, callbacks_delivered=before["callbacks_delivered"] + 1)
    assert after["callbacks_retried"] - before["callbacks_retried"] == 2
    assert after["callbacks_failed"] - before["callbacks_failed"] == 2
    assert after["callbacks_sent"] - before["callbacks_sent"] == 3


async def test_always_failing_receiver_gets_one_try_and_three_retries(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    where = path()
    receiver.program(where, [503] * 10)
    before = await sim.astats()
    await client.create_task(request(receiver, where, "nobody home #gen=5"))
    after = await sim.await_(callbacks_given_up=before["callbacks_given_up"] + 1)
    assert len(receiver.deliveries(where)) == 4  # the delivery is over: nothing more will come
    assert after["callbacks_sent"] - before["callbacks_sent"] == 4
    assert after["callbacks_retried"] - before["callbacks_retried"] == 3
    assert after["callbacks_delivered"] == before["callbacks_delivered"]


async def test_receiver_timeout_counts_as_a_failed_attempt(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    where = path()
    receiver.program(where, ["hang"])  # holds the first attempt past the sender's timeout
    await sim.aset_config(callback_timeout_seconds=0.2)
    before = await sim.astats()
    await client.create_task(request(receiver, where, "slow receiver #gen=5"))
    attempts = await receiver.await_for(2, where)
    assert [a.status for a in attempts] == ["hang", 200]
    after = await sim.await_(callbacks_delivered=before["callbacks_delivered"] + 1)
    assert after["callbacks_failed"] - before["callbacks_failed"] == 1


async def test_http_callback_url_is_refused_at_create(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    plain = receiver.url("insecure").replace("https://", "http://")
    with pytest.raises(InvalidRequestError) as caught:  # the client checks first...
        await client.create_task(request(receiver, "x", "plain", callback_url=plain))
    assert caught.value.param == "callback_url"
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    async with httpx.AsyncClient(
        verify=sim.ssl_context(), headers=headers
    ) as http:  # ...and so does the provider
        response = await http.post(
            f"{sim.base_url}/v1/videos/generations",
            json={"model": "seedance-1.5-pro", **request(receiver, "x", "plain", callback_url=plain)},
        )
    assert response.status_code == 400 and response.json()["error"]["param"] == "callback_url"


# -- delivery faults ----------------------------------------------------------------------------------------
async def test_dropped_callback_never_arrives(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    where = path()
    before = await sim.astats()
    task = await client.create_task(request(receiver, where, "silent #nocallback #gen=5"))
    # The drop is decided when the task settles, so once it has settled nothing is in flight.
    await sim.await_(task_id=task.id, callbacks_dropped=before["callbacks_dropped"] + 1)
    assert receiver.deliveries(where) == []
    assert (await client.get_task(task.id)).known_status is TaskStatus.COMPLETED  # polling still works


async def test_drop_rate_drops_callbacks(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    await sim.aset_config(callback_drop_rate=1.0)
    where = path()
    before = await sim.astats()
    task = await client.create_task(request(receiver, where, "unlucky #gen=5"))
    await sim.await_(task_id=task.id, callbacks_dropped=before["callbacks_dropped"] + 1)
    assert receiver.deliveries(where) == []


async def test_duplicate_callback_arrives_twice(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    where = path()
    await client.create_task(request(receiver, where, "echo #dupcallback #gen=5"))
    first, second = await receiver.await_for(2, where)
    assert first.body == second.body and first.json()["status"] == "completed"
    assert second.received_at >= first.received_at


async def test_duplicate_rate_duplicates(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    await sim.aset_config(callback_duplicate_rate=1.0)
    where = path()
    await client.create_task(request(receiver, where, "echo by rate #gen=5"))
    assert len(await receiver.await_for(2, where)) == 2


async def test_delayed_callback(
    client: GPTImage2Client, sim: SimulatorHandle, receiver: CallbackReceiver
) -> None:
    delay = 0.3
    await sim.aset_config(callback_delay_seconds=delay)
    where = path()
    sent = time.monotonic()
    await client.create_task(request(receiver, where, "late news #gen=0"))
    [delivery] = await receiver.await_for(1, where)
    assert delivery.received_at - sent >= delay


async def test_reordered_callbacks_arrive_newest_first(ca: trustme.CA, receiver: CallbackReceiver) -> None:
    config = {
        "callback_backoff_scale": BACKOFF_SCALE,
        "callback_reorder": True,
        "callback_reorder_window_seconds": 0.2,
    }
    # A simulator of its own: every task that settles while reordering is on joins the batch.
    async with running_simulator(time_scale=1000, ca=ca, config=config) as own, own.client() as provider:
        where = path()
        ids = [
            (await provider.create_task(request(receiver, where, f"batch #gen={LONG + n}"))).id
            for n in range(3)
        ]
        await own.aadvance_clock(LONG + 10)  # all three end together, in creation order
        deliveries = await receiver.await_for(3, where)
        assert [d.json()["id"] for d in deliveries] == ids[::-1]

        alone = path()
        task = await provider.create_task(request(receiver, alone, "single #gen=5"))
        fresh, stale = await receiver.await_for(2, alone)
        assert fresh.json()["status"] == "completed" and fresh.json()["id"] == task.id
        # Stale news after fresh news: the receiver must re-read the task, not trust the order.
        assert stale.json()["status"] in ("pending", "processing") and stale.json()["id"] == task.id
