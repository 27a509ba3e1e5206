"""A worker killed (SIGKILL, a real process) in the middle of a large re-host: another worker
finishes it. One object with the right sha256, and no second provider task."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import PendingActivityState

from tests.flow_helpers import Stack, assert_rehosted_as_provided, finished, prompt, sim_tasks_for, start
from workflows.control import describe_generation
from workflows.models import GenerationStatus

ROOT = Path(__file__).resolve().parent.parent
RESULT_BYTES = 300 * 1024 * 1024


def spawn_worker(stack: Stack, task_queue: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **stack.worker_env(), "TASK_QUEUE": task_queue}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def rehost_bytes_done(stack: Stack, workflow_id: str) -> int:
    description = await stack.client.get_workflow_handle(workflow_id).describe()
    for pending in description.raw_description.pending_activities:
        if (
            pending.activity_type.name == "rehost_result"
            and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        ):
            if pending.heartbeat_details.payloads:
                details = await stack.client.data_converter.decode(pending.heartbeat_details.payloads)
                return int(details[0].get("bytes_done", 0))
    return 0


async def test_killed_worker_mid_rehost_is_finished_by_another(stack: Stack, tmp_path: Path) -> None:
    task_queue = f"crash-{uuid.uuid4().hex[:8]}"
    crash_stack = stack.with_task_queue(task_queue)
    first = spawn_worker(crash_stack, task_queue, tmp_path / "worker-1.log")
    second = None
    # Slow enough that the copy is surely still running when the worker dies (~6 s).
    previous_rate = stack.sim.config()["download_bytes_per_second"]
    stack.sim.set_config(download_bytes_per_second=RESULT_BYTES // 6)
    try:
        text = prompt("A very large result", f"#size={RESULT_BYTES}")
        started = await start(
            crash_stack, text, quality="480p", duration=4, tuning={"heartbeat_timeout_seconds": 3}
        )
        workflow_id = started.view.id
        done = 0
        for _ in range(3000):  # wait until the copy is really under way, then kill mid-stream
            done = await rehost_bytes_done(crash_stack, workflow_id)
            if done > 0:
                break
            assert first.poll() is None, (tmp_path / "worker-1.log").read_text()[-2000:]
            await asyncio.sleep(0.02)
        assert 0 < done < RESULT_BYTES
        first.send_signal(signal.SIGKILL)
        stack.sim.set_config(download_bytes_per_second=previous_rate)  # the second copy at full speed
        first.wait(10)
        view = await describe_generation(crash_stack.client, workflow_id)
        assert view.status is GenerationStatus.REHOSTING

        second = spawn_worker(crash_stack, task_queue, tmp_path / "worker-2.log")
        view = await finished(crash_stack, workflow_id, within=180)
        assert view.status is GenerationStatus.DELIVERED, view.failure_message
        assert len(sim_tasks_for(crash_stack, text)) == 1 and view.attempts == 1
        await assert_rehosted_as_provided(crash_stack, view)
        [output] = view.outputs
        assert output.size_bytes == RESULT_BYTES
        objects = list(
            crash_stack.s3.minio_client().list_objects(
                crash_stack.s3.bucket, prefix=f"generations/demo/{workflow_id}/", recursive=True
            )
        )
        assert [o.object_name for o in objects] == [output.object_key]
    finally:
        stack.sim.set_config(download_bytes_per_second=previous_rate)
        for process in (first, second):
            if process and process.poll() is None:
                process.terminate()
                process.wait(10)
