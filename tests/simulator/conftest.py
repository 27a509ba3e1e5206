"""The simulator under test: one per test module (time 1000x faster, its own video cache), and a
client of it per test. A module that needs another simulator defines its own `sim`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from gptimage2 import GPTImage2Client
from simulator.testing import SimulatorHandle, running_simulator


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorHandle]:
    with running_simulator(time_scale=1000, cache_dir=tmp_path_factory.mktemp("videos")) as handle:
        yield handle


@pytest.fixture
async def client(sim: SimulatorHandle) -> AsyncIterator[GPTImage2Client]:
    async with sim.client() as provider:
        yield provider
