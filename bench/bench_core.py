"""The durable core's benchmarks (issue 3). `python -m bench.bench_core`

1. throughput: generations/s for N generations against the simulator at a high time scale,
   divided by a bare workflow with the same number of no-op activities on the same server.
   Twice: with every process sharing the machine's CPUs, and isolated (`Servers.isolated`):
   the system under test (Temporal, the API, the worker) on half of them, the stand-ins for
   what production runs elsewhere (the provider's simulator, SeaweedFS) on the other half.
   Shared, the generations pay for the stand-ins' CPU too (9 ms of ~51 per generation) while
   the bare workflow uses none, so the goal (>= 0.75) is judged isolated: both runs then get
   the same CPUs for the same system, as in production.
2. overhead: p95 of (delivered - provider completed - transfer) with callbacks on.
3. re-host: MB/s of a 1 GiB result through `rehost_result` / a raw httpx-stream -> put_object
   pipe, and the process's RSS growth during it.
4. provider reads per delivered task with callbacks on.
5. kill and resume: a 300 MiB copy SIGKILLed at ~90 % and retried; MiB the provider sent twice,
   against what a restart from byte 0 would fetch again.
6. history: events and Temporal Cloud billable actions per delivered generation (each burst's
   and the paced run's, from their real histories: bench/history_cost.py), and those of one
   generation on the callback happy path (the callback seconds after the create).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.rehost import PART_SIZE, READ_CHUNK, RehostActivities, _HashingReader
from devstack.exits import run_main
from devstack.testbed import Testbed, rehost_job, stored_part_bytes, unfinished_uploads
from settings import Settings, outbound_trust
from storage import make_minio, object_key
from temporal_client import data_converter
from worker import build_worker, product_worker
from workflows.generation import VideoGenerationWorkflow
from workflows.models import GenerationStatus, RehostInput
from workflows.report import percentile
from workflows.webhook_plan import WebhookPlan

from ._common import Servers, publish, servers, start_clip
from .bare_workflow import BareWorkflow, bare_step
from .history_cost import ACTIONS_GOAL, EVENTS_GOAL, HistoryCost, cost_figures, history_cost, summary

MiB = 1024 * 1024
TIME_SCALE = 1000.0
ROUNDS = 5
# The bare workflow's no-op activities: as many as a happy-path generation makes calls (create,
# re-read, re-host).
BARE_STEPS = 3
KILL_RATE = 30_000_000  # bytes/s while the killed copy runs: slow enough to kill it mid-part


async def bare_rate(
    client: Client,
    count: int,
    steps: int,
    cpu: Callable[[], dict[str, float]],
    executor: ThreadPoolExecutor,
) -> tuple[float, dict[str, float]]:
    """Workflows per second, and the CPU each process spent per workflow while they ran, on a
    worker built as the product's is (same sandbox runner, same activity limit)."""
    queue = f"bare-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, queue, [bare_step], workflows=[BareWorkflow], executor=executor):
        cpu_before, started = cpu(), time.perf_counter()
        handles = await asyncio.gather(
            *(
                client.start_workflow(
                    BareWorkflow.run, steps, id=f"bare-{uuid.uuid4().hex}", task_queue=queue
                )
                for _ in range(count)
            )
        )
        await asyncio.gather(*(h.result() for h in handles))
        rate, cpu_after = count / (time.perf_counter() - started), cpu()
        return rate, {k: (cpu_after[k] - cpu_before[k]) * 1000 / count for k in cpu_before}


def _event_times(history: Any) -> tuple[float | None, float | None, float | None]:
    """(rehost started, rehost completed, workflow completed) as unix seconds."""
    rehost = RehostActivities.rehost_result.__name__
    rehost_scheduled: set[int] = set()
    started = completed = closed = None
    for event in history.events:
        when = event.event_time.ToDatetime().timestamp()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == rehost:
                rehost_scheduled.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            if event.activity_task_started_event_attributes.scheduled_event_id in rehost_scheduled:
                started = when
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            if event.activity_task_completed_event_attributes.scheduled_event_id in rehost_scheduled:
                completed = when
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            closed = when
    return started, completed, closed


async def generation_run(
    tb: Testbed,
    count: int,
    time_scale: float,
    per_second: float | None = None,
    cpu: Callable[[], dict[str, float]] | None = None,
    webhooks: WebhookPlan | None = None,
) -> dict[str, Any]:
    """`count` generations, all at once (a burst: throughput) or `per_second` (paced: latency).
    With `cpu`, also the CPU each process spent per generation while they ran; with `webhooks`,
    each generation notifies as that plan says (bench.bench_webhooks)."""
    before = tb.sim.stats()
    cpu_before = cpu() if cpu else {}
    prompts = [f"A bench clip {uuid.uuid4().hex[:8]} #gen=20" for _ in range(count)]

    async def one(index: int, text: str) -> Any:
        if per_second:
            await asyncio.sleep(index / per_second)  # pacing the load, not synchronisation
        return await start_clip(tb.client, tb.task_queue, text, webhooks=webhooks)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    handles = [tb.client.get_workflow_handle_for(VideoGenerationWorkflow.run, r.view.id) for r in results]
    views = await asyncio.gather(*(h.result() for h in handles))
    elapsed = time.perf_counter() - started
    cpu_after = cpu() if cpu else {}
    after = tb.sim.stats()
    delivered = [v for v in views if v.status is GenerationStatus.DELIVERED]

    # The simulator's clock runs `time_scale` times faster than ours: map its completion times
    # back to wall-clock time through one reading of both clocks.
    sim_now, real_now = tb.sim.advance_clock(0), time.time()

    overheads = []
    costs: list[HistoryCost] = []
    async with tb.provider() as provider:
        for view, handle in zip(views, handles, strict=True):
            if view.status is not GenerationStatus.DELIVERED:
                continue
            history = await handle.fetch_history()
            costs.append(history_cost(history.events))
            task = await provider.get_task(view.provider_task_ids[-1])
            if task.completed_at is None:
                continue
            provider_done = real_now - (sim_now - task.completed_at) / time_scale
            rehost_started, rehost_completed, closed = _event_times(history)
            if rehost_started and rehost_completed and closed:
                overheads.append((closed - provider_done) - (rehost_completed - rehost_started))
    return {
        "generations": count,
        "delivered": len(delivered),
        "seconds": elapsed,
        "generations_per_second": count / elapsed,
        "provider_reads_per_delivered": (after["gets_served"] - before["gets_served"])
        / max(1, len(delivered)),
        "callbacks_sent": after["callbacks_sent"] - before["callbacks_sent"],
        **cost_figures(costs),
        "overhead_samples": len(overheads),
        "overhead_p50_ms": (statistics.median(overheads) * 1000) if overheads else None,
        "overhead_p95_ms": ((percentile(overheads, 95) or 0) * 1000) if overheads else None,
        **{f"cpu_ms_{k}": (cpu_after[k] - cpu_before[k]) * 1000 / count for k in cpu_before},
    }


# The callback happy path as production sees it: the callback comes seconds after the create
# (8 000 simulated seconds: 8 s here), after the workflow has gone to sleep on it.
HAPPY_PATH_GEN_SECONDS = 8000


async def happy_path_run(tb: Testbed) -> dict[str, Any]:
    """Events and billable actions of one generation delivered on its callback, default tuning."""
    text = f"A happy path clip {uuid.uuid4().hex[:8]} #gen={HAPPY_PATH_GEN_SECONDS}"
    started = await start_clip(tb.client, tb.task_queue, text)
    handle = tb.client.get_workflow_handle_for(VideoGenerationWorkflow.run, started.view.id)
    view = await handle.result()
    cost = history_cost((await handle.fetch_history()).events)
    return {
        "status": view.status.value,
        "polls": view.polls,
        "callbacks": view.callbacks_received,
        "history_events": cost.events,
        "billable_actions": cost.actions,
        "history_events_goal_met": cost.events <= EVENTS_GOAL,
        "billable_actions_goal_met": cost.actions <= ACTIONS_GOAL,
        "history": summary(cost),
    }


class _RssSampler:
    """Peak resident memory of this process while a block runs (sampled from /proc)."""

    def __init__(self) -> None:
        self.peak = self.start = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> _RssSampler:
        self.start = self.peak = _rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / MiB


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def raw_pipe(settings: Settings, url: str, key: str) -> int:
    """Baseline: the plainest correct streaming copy, with the same part size."""
    store = make_minio(settings)
    with (
        httpx.Client(verify=outbound_trust(settings), timeout=60) as http,
        http.stream("GET", url) as response,
    ):
        reader = _HashingReader(response.iter_bytes(READ_CHUNK), hashing=False)
        store.put_object(settings.s3_bucket, key, reader, length=-1, part_size=PART_SIZE)  # type: ignore[arg-type]
        return reader.bytes_read


def measure_copy(kind: str, settings: Settings, url: str, job: RehostInput, size: int) -> tuple[float, float]:
    """In a child process: MiB/s of one copy and how far the process's RSS rose during it."""
    env = ActivityEnvironment()
    env.payload_converter = data_converter(settings).payload_converter
    rehost = RehostActivities(settings, make_minio(settings))
    with _RssSampler() as rss:
        started = time.perf_counter()
        if kind == "raw":
            copied = raw_pipe(settings, url, f"bench/raw-{uuid.uuid4().hex}.mp4")
        else:
            copied = env.run(rehost.rehost_result, job).size_bytes
        seconds = time.perf_counter() - started
    assert copied == size, (kind, copied, size)
    return copied / MiB / seconds, rss.growth_mib


async def _completed_result(tb: Testbed, size: int) -> tuple[str, str]:
    """(result URL, task id) of a finished simulator task whose result is `size` bytes."""
    async with tb.provider() as provider:
        task = await provider.create_task(
            {
                "prompt": f"A huge clip {uuid.uuid4().hex[:8]} #size={size} #gen=1",
                "quality": "480p",
                "duration": 4,
                "generate_audio": False,
            }
        )
        while not (task := await provider.get_task(task.id)).is_terminal:
            await asyncio.sleep(0.05)
    assert task.results, task
    return task.results[0], task.id


async def rehost_run(tb: Testbed, size: int) -> dict[str, Any]:
    url, task_id = await _completed_result(tb, size)
    job = rehost_job(url, task_id)

    # Each copy in a fresh process: memory one copy leaves in the heap would hide the next
    # one's growth.
    loop = asyncio.get_running_loop()
    results: dict[str, list[tuple[float, float]]] = {"raw": [], "rehost": []}
    for kind in ("raw", "rehost", "raw", "rehost"):
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results[kind].append(
                await loop.run_in_executor(pool, measure_copy, kind, tb.settings, url, job, size)
            )
    (base_1, base_rss_1), (base_2, base_rss_2) = results["raw"]
    (ours_1, ours_rss_1), (ours_2, ours_rss_2) = results["rehost"]
    base, mine = max(base_1, base_2), max(ours_1, ours_2)
    return {
        "result_mib": size / MiB,
        "raw_pipe_mib_per_s": base,
        "rehost_mib_per_s": mine,
        "rehost_over_raw": mine / base,
        "raw_pipe_rss_growth_mib": max(base_rss_1, base_rss_2),
        "rehost_rss_growth_mib": max(ours_rss_1, ours_rss_2),
    }


def copy_attempt(settings: Settings, job: RehostInput, attempt: int) -> int:
    """In a child process: one attempt of `rehost_result`, as the worker would run it (a
    retry carries no heartbeat details here: it finds the upload in the store)."""
    env = ActivityEnvironment()
    env.payload_converter = data_converter(settings).payload_converter
    env.info = dataclasses.replace(env.info, attempt=attempt, heartbeat_timeout=timedelta(seconds=3))
    return env.run(RehostActivities(settings, make_minio(settings)).rehost_result, job).size_bytes


async def kill_resume_run(tb: Testbed, size: int, rate: int) -> dict[str, Any]:
    """A copy SIGKILLed at ~90 % (wherever it is in its part, perhaps with a part still being
    uploaded), then retried in a fresh process: bytes the provider sent twice, against what a
    copy that restarts from zero would fetch again (everything sent before the kill)."""
    url, task_id = await _completed_result(tb, size)
    job = rehost_job(url, task_id)
    key = object_key(job.tenant, job.workflow_id, job.phase, job.index)
    store = make_minio(tb.settings)

    def served() -> int:
        return int(next(t for t in tb.sim.tasks() if t["id"] == task_id)["bytes_served"])

    spawn = multiprocessing.get_context("spawn")
    previous_rate = tb.sim.config()["download_bytes_per_second"]
    tb.sim.set_config(download_bytes_per_second=rate)  # paced, so the kill lands mid-part
    try:
        first = spawn.Process(target=copy_attempt, args=(tb.settings, job, 1))
        first.start()
        while True:
            stored, sent = stored_part_bytes(store, tb.settings.s3_bucket, key), served()
            if stored >= 0.9 * size - PART_SIZE // 2:  # wherever the copy is in its part
                break
            if not first.is_alive() or sent >= size:
                raise RuntimeError(
                    f"the copy ended before it could be killed: stored {stored}, sent {sent}, exit {first.exitcode}"
                )
            await asyncio.sleep(0.01)
        first.kill()
        first.join()
    finally:
        tb.sim.set_config(download_bytes_per_second=previous_rate)
    served_at_kill = served()
    [upload_id] = unfinished_uploads(store, tb.settings.s3_bucket, key)
    listed = store._list_parts(tb.settings.s3_bucket, key, upload_id).parts
    whole = sum(1 for part in listed if part.size == PART_SIZE)
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        copied = await asyncio.get_running_loop().run_in_executor(pool, copy_attempt, tb.settings, job, 2)
    assert copied == size
    refetched = served() - size
    return {
        "kill_at_fraction": stored / size,
        "kill_whole_parts_stored": whole,
        "kill_parts_cut_off_mid_upload": len(listed) - whole,
        "kill_refetched_mib": refetched / MiB,
        "kill_refetched_parts": refetched / PART_SIZE,
        "kill_restart_would_refetch_mib": served_at_kill / MiB,
        "kill_refetched_over_restart": refetched / served_at_kill,
    }


async def run(count: int, rehost_mib: int, kill_mib: int) -> dict[str, Any]:
    with servers(time_scale=TIME_SCALE) as srv:
        return await _run(srv, count, rehost_mib, kill_mib)


async def _run(srv: Servers, count: int, rehost_mib: int, kill_mib: int) -> dict[str, Any]:
    tb = await srv.testbed()
    with ThreadPoolExecutor(max_workers=64) as executor:
        async with (
            tb.provider() as provider,
            product_worker(tb.client, tb.settings, provider, executor=executor),
        ):
            await generation_run(tb, 5, TIME_SCALE)  # warm up: encode the cached clip, open connections
            throughput = await srv.shared_and_isolated(lambda: throughput_rounds(srv, tb, count, executor))
            paced = await generation_run(tb, 30, TIME_SCALE, per_second=5)
            happy = await happy_path_run(tb)
            rehost = await rehost_run(tb, rehost_mib * MiB) if rehost_mib else {}
            if kill_mib:
                rehost |= await kill_resume_run(tb, kill_mib * MiB, KILL_RATE)
    return {
        **throughput,
        **{f"paced_{k}": v for k, v in paced.items()},
        **{f"happy_path_{k}": v for k, v in happy.items()},
        **rehost,
    }


async def throughput_rounds(
    srv: Servers, tb: Testbed, count: int, executor: ThreadPoolExecutor
) -> dict[str, Any]:
    """Bursts of `count` generations against the bare workflow, in interleaved rounds, best of
    each (one round alone swings with SQLite checkpoints), with the CPU per process."""
    bare_rounds, gen_rounds = [], []
    for _ in range(ROUNDS):
        bare_rounds.append(await bare_rate(tb.client, count, BARE_STEPS, srv.cpu_seconds, executor))
        gen_rounds.append(await generation_run(tb, count, TIME_SCALE, cpu=srv.cpu_seconds))
    bare_rate_, bare_cpu = max(bare_rounds, key=lambda r: r[0])
    gens = max(gen_rounds, key=lambda r: r["generations_per_second"])
    return {
        "bare_workflows_per_second_rounds": [round(b, 1) for b, _ in bare_rounds],
        "generations_per_second_rounds": [round(g["generations_per_second"], 1) for g in gen_rounds],
        "bare_workflows_per_second": bare_rate_,
        **{f"burst_{k}": v for k, v in gens.items()},
        "throughput_ratio_vs_bare": gens["generations_per_second"] / bare_rate_,
        # Each round's generations against the bare run just before it: the noise between rounds.
        "throughput_ratio_median_of_rounds": statistics.median(
            g["generations_per_second"] / b for (b, _), g in zip(bare_rounds, gen_rounds, strict=True)
        ),
        **{f"bare_cpu_ms_{k}": v for k, v in bare_cpu.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--rehost-mib", type=int, default=1024)
    parser.add_argument(
        "--kill-mib", type=int, default=300, help="size of the killed-and-resumed copy (0: skip)"
    )
    args = parser.parse_args()
    figures = asyncio.run(run(args.generations, args.rehost_mib, args.kill_mib))
    publish(
        "core",
        f"durable core (goals: isolated throughput ratio >= 0.75, overhead p95 <= 100 ms, happy path <= {EVENTS_GOAL} events and <= {ACTIONS_GOAL} actions, re-host ratio >= 0.9, RSS growth <= 100 MiB, reads per delivered <= 2)",
        figures,
    )


if __name__ == "__main__":
    run_main(main)
