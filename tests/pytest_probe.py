"""Run only by tests/test_exits.py, in a child pytest (the suite does not collect it: its name
is no test_*.py): a session that opened a Temporal client must still exit with its status."""

from __future__ import annotations

import os

from temporalio.client import Client

from tests.test_exits import TEARDOWN_PROBE


async def test_pytest_probe() -> None:
    # A client leaves the SDK's runtime threads behind, as the session fixtures do.
    client = await Client.connect(os.environ["EXITS_PYTEST_PROBE_TEMPORAL"])
    assert await client.service_client.check_health()
    exec(TEARDOWN_PROBE, globals())
    assert os.environ["EXITS_PYTEST_PROBE"] == "pass"
