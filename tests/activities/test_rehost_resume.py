"""A re-host that is cut off continues where it stopped: the next attempt asks the result host
for the rest (`Range`) and finishes the same multipart upload; a host that ignores Range gets a
clean restart. Real simulator (HTTPS), real SeaweedFS; the activity runs in `ActivityEnvironment`
with the heartbeat details a real retry would carry."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.rehost import PART_SIZE, RehostActivities
from devstack.testbed import Testbed, rehost_job, unfinished_uploads
from storage import object_key
from tests.helpers.flow import provider_sha256, stored_manifest, stored_sha256
from workflows.models import ActivityErrorType, RehostInput

MiB = 1024 * 1024
SIZE = 40 * MiB
CUT = 20 * MiB  # the first download stops here: parts 1 and 2 (16 MiB) are stored by then


@pytest.fixture
def rehost(stack: Testbed) -> Iterator[RehostActivities]:
    activities = RehostActivities(stack.settings, stack.s3.minio_client())
    yield activities
    activities.close()


async def result_of(stack: Testbed, *directives: str) -> RehostInput:
    """A completed simulator task with these directives, and the re-host job for its result."""
    async with stack.provider() as provider:
        task = await provider.create_task(
            {
                "prompt": " ".join([f"resumable {uuid.uuid4().hex[:8]} #gen=1", *directives]),
                "quality": "480p",
                "duration": 4,
                "generate_audio": False,
            }
        )
        await stack.sim.await_(task_id=task.id)
        task = await provider.get_task(task.id)
    assert task.results
    return rehost_job(task.results[0], task.id)


def sim_task(stack: Testbed, task_id: str) -> dict[str, Any]:
    [found] = [t for t in stack.sim.tasks() if t["id"] == task_id]
    return found


def unfinished(stack: Testbed, key: str) -> list[str]:
    return unfinished_uploads(stack.s3.minio_client(), stack.s3.bucket, key)


def attempt(
    rehost: RehostActivities, job: RehostInput, number: int, details: list[Any]
) -> tuple[Any, list[Any]]:
    """One attempt with the details the previous one heartbeated; returns (result or the
    exception, this attempt's heartbeats)."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, attempt=number, heartbeat_details=details, heartbeat_timeout=timedelta(seconds=2)
    )
    beats: list[Any] = []
    env.on_heartbeat = lambda *d: beats.append(d[0])
    try:
        return env.run(rehost.rehost_result, job), beats
    except Exception as exc:
        return exc, beats


async def cut_copy(
    stack: Testbed, rehost: RehostActivities, *directives: str
) -> tuple[RehostInput, str, list[Any]]:
    """A SIZE result whose first download stops at CUT, and the first attempt at copying it
    (it fails with parts 1 and 2 stored): the job, its object key and the attempt's beats."""
    job = await result_of(stack, f"#size={SIZE}", f"#cut={CUT}", *directives)
    failed, beats = attempt(rehost, job, 1, [])
    assert isinstance(failed, httpx.HTTPError | ApplicationError) and not getattr(
        failed, "non_retryable", False
    )
    return job, object_key(job.tenant, job.workflow_id, job.phase, job.index), beats


async def test_a_cut_copy_continues_the_same_upload_from_its_last_part(
    stack: Testbed, rehost: RehostActivities
) -> None:
    job, key, beats = await cut_copy(stack, rehost)
    [upload_id] = unfinished(stack, key)
    last = beats[-1]  # the beat sent as the attempt failed: exactly what S3 holds
    assert last["upload_id"] == upload_id and last["object_key"] == key
    assert last["bytes_done"] == 2 * PART_SIZE and [n for _, n in last["parts"]] == [1, 2]

    output, _ = attempt(rehost, job, 2, [last])
    assert not isinstance(output, Exception), output
    served = sim_task(stack, job.task_id)["bytes_served"]
    # Attempt 1 sent CUT bytes; attempt 2 only what follows the two stored parts.
    assert served == CUT + SIZE - 2 * PART_SIZE and served - SIZE <= PART_SIZE
    expected = await provider_sha256(stack, job.url)
    assert stored_sha256(stack, key) == expected == output.sha256 and output.size_bytes == SIZE
    assert stored_manifest(stack, key).sha256 == expected
    assert unfinished(stack, key) == []


async def test_a_resume_without_heartbeat_details_finds_the_upload_in_the_store(
    stack: Testbed, rehost: RehostActivities
) -> None:
    # A worker killed before its first heartbeat reached the server leaves no details: the
    # retry finds the unfinished upload of its key and continues it all the same.
    job, key, _ = await cut_copy(stack, rehost)
    output, _ = attempt(rehost, job, 2, [])
    assert not isinstance(output, Exception), output
    assert sim_task(stack, job.task_id)["bytes_served"] == CUT + SIZE - 2 * PART_SIZE
    assert output.sha256 == await provider_sha256(stack, job.url)
    assert unfinished(stack, key) == []


async def test_a_host_that_ignores_range_gets_a_clean_restart(
    stack: Testbed, rehost: RehostActivities
) -> None:
    job, key, beats = await cut_copy(stack, rehost, "#norange")
    [old_upload] = unfinished(stack, key)

    output, _ = attempt(rehost, job, 2, beats[-1:])
    assert not isinstance(output, Exception), output
    assert sim_task(stack, job.task_id)["bytes_served"] == CUT + SIZE  # the whole body again
    assert stored_sha256(stack, key) == await provider_sha256(stack, job.url) == output.sha256
    assert old_upload not in unfinished(stack, key) and unfinished(stack, key) == []


async def test_a_copy_that_fails_for_good_aborts_its_upload(stack: Testbed, rehost: RehostActivities) -> None:
    job, key, beats = await cut_copy(stack, rehost)
    assert len(unfinished(stack, key)) == 1
    stack.sim.advance_clock(25 * 3600)  # the link expires before the retry
    failed, _ = attempt(rehost, job, 2, beats[-1:])
    assert isinstance(failed, ApplicationError) and failed.type == ActivityErrorType.LINK_EXPIRED
    assert unfinished(stack, key) == []


async def test_heartbeats_come_on_a_timer_while_bytes_trickle(
    stack: Testbed, rehost: RehostActivities
) -> None:
    # 2 MB at 1 MB/s never fills a part; heartbeats must still come, every half second with a
    # 2 s heartbeat timeout (a copy that beat per part would send none).
    job = await result_of(stack, "#size=2000000", "#rate=1m")
    output, beats = attempt(rehost, job, 1, [])
    assert not isinstance(output, Exception), output
    assert len(beats) >= 2 and all(b["bytes_done"] == 0 and b["upload_id"] is None for b in beats)
    assert output.sha256 == await provider_sha256(stack, job.url)


async def test_a_part_cut_off_mid_upload_is_not_trusted(stack: Testbed, rehost: RehostActivities) -> None:
    # A worker killed while sending part 3 can leave it listed with the bytes that got there
    # (SeaweedFS does): the retry must send part 3 again, not continue after its stub.
    job, key, beats = await cut_copy(stack, rehost)
    [upload_id] = unfinished(stack, key)
    stack.s3.minio_client()._upload_part(stack.s3.bucket, key, b"\0" * 1000, None, upload_id, 3)

    output, _ = attempt(rehost, job, 2, beats[-1:])
    assert not isinstance(output, Exception), output
    assert sim_task(stack, job.task_id)["bytes_served"] == CUT + SIZE - 2 * PART_SIZE
    assert stored_sha256(stack, key) == await provider_sha256(stack, job.url) == output.sha256


async def test_parts_missing_below_the_last_stored_one_are_filled_in(
    stack: Testbed, rehost: RehostActivities
) -> None:
    # Parts finish out of order: a worker can die with part 4 stored and part 3 still on its
    # way. The retry fetches part 3 alone, then continues after part 4.
    job, key, beats = await cut_copy(stack, rehost)
    [upload_id] = unfinished(stack, key)
    part_4 = f"bytes={3 * PART_SIZE}-{4 * PART_SIZE - 1}"
    async with httpx.AsyncClient(verify=stack.tls.ssl_context()) as http:
        body = (await http.get(job.url, headers={"Range": part_4})).content
    stack.s3.minio_client()._upload_part(stack.s3.bucket, key, body, None, upload_id, 4)

    output, _ = attempt(rehost, job, 2, beats[-1:])
    assert not isinstance(output, Exception), output
    # The cut download, our fetch of part 4, then part 3 and everything after part 4.
    assert sim_task(stack, job.task_id)["bytes_served"] == CUT + PART_SIZE + PART_SIZE + SIZE - 4 * PART_SIZE
    assert stored_sha256(stack, key) == await provider_sha256(stack, job.url) == output.sha256
    assert unfinished(stack, key) == []
