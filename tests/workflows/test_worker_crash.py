"""A worker killed (SIGKILL, a real process) in the middle of a large re-host: another worker
continues the copy from its last stored part. One object with the provider's bytes, no second
provider task, at most one part downloaded twice, no unfinished upload left in the bucket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from activities.rehost import PART_SIZE
from devstack.testbed import Testbed, stored_part_bytes, unfinished_uploads
from storage import manifest_key, object_key
from tests.helpers import assert_eventually
from tests.helpers.flow import assert_rehosted_as_provided, finished, prompt, sim_tasks_for, start
from workflows.models import GenerationStatus

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def spawn_worker(stack: Testbed, task_queue: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **stack.worker_env(), "TASK_QUEUE": task_queue}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def bytes_served(stack: Testbed, text: str) -> int:
    """Result bytes the simulator sent for the prompt's task (0 before it exists)."""
    return sum(int(task["bytes_served"]) for task in sim_tasks_for(stack, text))


@pytest.mark.parametrize(
    ("size", "rate"),
    [
        (80 * MiB, 12_000_000),  # ten parts, the kill during the tenth: ~6 s in
        pytest.param(300 * MiB, 30_000_000, marks=pytest.mark.slow),  # the case
    ],
    ids=["80MiB", "300MiB"],
)
async def test_killed_worker_mid_rehost_is_continued_by_another(
    stack: Testbed, tmp_path: Path, size: int, rate: int
) -> None:
    task_queue = f"crash-{uuid.uuid4().hex[:8]}"
    crash_stack = stack.with_task_queue(task_queue)
    first = spawn_worker(crash_stack, task_queue, tmp_path / "worker-1.log")
    second = None
    # Paced, so the kill can land mid-part; the rest (and the checks) at full speed.
    previous_rate = stack.sim.config()["download_bytes_per_second"]
    stack.sim.set_config(download_bytes_per_second=rate)
    try:
        text = prompt("A very large result", f"#size={size}")
        started = await start(
            crash_stack, text, quality="480p", duration=4, tuning={"heartbeat_timeout_seconds": 3}
        )
        workflow_id = started.view.id
        key = object_key("demo", workflow_id, "final", 0)

        # Kill at ~90 %, while the worker reads a part after the last stored one (and is not
        # also uploading an earlier one: those would be downloaded again as well).
        async def moment_to_kill() -> tuple[int, int]:
            stored, served = (
                stored_part_bytes(crash_stack.s3.minio_client(), crash_stack.s3.bucket, key),
                bytes_served(crash_stack, text),
            )
            if stored >= 0.9 * size - PART_SIZE // 2 and served - stored <= PART_SIZE // 2 and served < size:
                return stored, served
            if first.poll() is not None:
                pytest.fail((tmp_path / "worker-1.log").read_text()[-2000:])
            if served >= size:
                pytest.fail("the copy ended before the kill")
            raise AssertionError(f"stored {stored}, served {served}")

        stored, _ = await assert_eventually(moment_to_kill, within=120, every=0.01, what="a moment to kill")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        stack.sim.set_config(download_bytes_per_second=previous_rate)
        served_before_kill = bytes_served(crash_stack, text)
        # (No status query here: with no worker alive a query waits for its timeout.)
        second = spawn_worker(crash_stack, task_queue, tmp_path / "worker-2.log")
        view = await finished(crash_stack, workflow_id, within=180)
        assert view.status is GenerationStatus.DELIVERED, view.failure_message
        assert len(sim_tasks_for(crash_stack, text)) == 1 and view.attempts == 1
        # Fetched twice: only what the first worker had read beyond its last stored part.
        refetched = bytes_served(crash_stack, text) - size
        assert served_before_kill > stored and refetched <= PART_SIZE, (refetched, served_before_kill, stored)
        await assert_rehosted_as_provided(crash_stack, view)
        [output] = view.outputs
        assert output.size_bytes == size and output.object_key == key
        objects = list(
            crash_stack.s3.minio_client().list_objects(
                crash_stack.s3.bucket, prefix=f"generations/demo/{workflow_id}/", recursive=True
            )
        )
        assert sorted(o.object_name for o in objects) == [key, manifest_key(key)]
        assert unfinished_uploads(crash_stack.s3.minio_client(), crash_stack.s3.bucket, key) == []
    finally:
        stack.sim.set_config(download_bytes_per_second=previous_rate)
        for process in (first, second):
            if process and process.poll() is None:
                process.terminate()
                process.wait(10)
