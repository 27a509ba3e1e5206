"""A result host slower than a part per heartbeat timeout is still delivered, in one download.

The issue's case is 200 KB/s against the 30 s heartbeat timeout: 6 MB per timeout, less than
one 8 MiB part, so a copy that heartbeats per part is declared dead and restarts from zero until
the link expires. Both sides are scaled by the same factor (15) to keep the test short: 3 MB/s
against a 2 s heartbeat timeout is the same 6 MB per timeout. (The simulator's time scale does
not apply: `#rate` is in real seconds, like the heartbeat timeout.)
"""

from __future__ import annotations

import pytest

from devstack.testbed import Testbed
from tests.helpers.flow import finished, prompt, sim_tasks_for, start, stored_sha256
from workflows.models import GenerationStatus

MiB = 1024 * 1024
SCALE = 15
RATE = 200_000 * SCALE
HEARTBEAT_TIMEOUT = 30 / SCALE


@pytest.mark.parametrize(
    "size",
    [16 * MiB, pytest.param(50 * MiB, marks=pytest.mark.slow)],  # ~6 s; the 50 MiB: ~18 s
    ids=["16MiB", "50MiB"],
)
async def test_a_slow_result_host_is_delivered_without_restarting(stack: Testbed, size: int) -> None:
    text = prompt("From a slow CDN", f"#size={size}", f"#rate={RATE}")
    started = await start(
        stack, text, quality="480p", duration=4, tuning={"heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT}
    )
    view = await finished(stack, started.view.id, within=size / RATE * 3 + 30)
    assert view.status is GenerationStatus.DELIVERED, view.failure_message
    [task] = sim_tasks_for(stack, text)
    assert task["bytes_served"] == size  # one download, never restarted
    [output] = view.outputs
    sha = stored_sha256(stack, output.object_key)
    assert output.size_bytes == size and sha == output.sha256
