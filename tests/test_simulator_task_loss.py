"""The simulator's task-loss hooks, through the real client: a forgotten task (a provider purge
or restart) answers 404 everywhere and never calls back; a refused one answers 401/403 (a key
revoked, an account changed) while other tasks are unaffected."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from gptimage2 import (
    APIStatusError,
    AuthenticationError,
    CancelNotSupportedError,
    GPTImage2Client,
    NotFoundError,
    PermissionDeniedError,
    TaskStatus,
    classify_exception,
)
from simulator.testing import SimulatorError, SimulatorHandle, running_callback_receiver, running_simulator


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorHandle]:
    with running_simulator(time_scale=1000, cache_dir=tmp_path_factory.mktemp("videos")) as handle:
        yield handle


@pytest.fixture
async def client(sim: SimulatorHandle) -> AsyncIterator[GPTImage2Client]:
    async with sim.client() as provider:
        yield provider


def small(prompt: str, **extra: str) -> dict[str, object]:
    return {
        "prompt": f"{prompt} [{uuid.uuid4().hex[:8]}]",
        "duration": 4,
        "quality": "480p",
        "generate_audio": False,
        **extra,
    }


async def test_a_forgotten_task_is_404_everywhere_and_never_calls_back(
    client: GPTImage2Client, sim: SimulatorHandle
) -> None:
    assert sim.ca is not None
    async with running_callback_receiver(sim.ca) as receiver:
        kept = await client.create_task(small("kept #gen=5", callback_url=receiver.url("kept")))
        gone = await client.create_task(small("gone #gen=5", callback_url=receiver.url("gone")))
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
