"""Callback route latency under load: does a stream of new generations slow the callbacks down?

The provider gives a callback 10 s and retries only 3 times, so the route must stay fast while
backend services are starting generations. Measured in one run, on this machine:

- baseline: callbacks alone at `--callback-rate` per second (open loop);
- mixed: the same callbacks plus `POST /v1/generations` at `--post-rate` per second;

and reported as p50/p99 of each plus the mixed/baseline ratios. Everything is real: the API
is `python -m api` (HTTPS, its own process), Temporal is the dev server in SQLite WAL mode,
the worker runs the real VideoGenerationWorkflow. Only the provider is an idle stand-in at the
activity boundary (tasks stay `processing`), so no video encoding competes for the CPU.

Run: `python -m bench.bench_callbacks [--seconds 10] [--points 100:10,200:20]`. The first point
is below a 2-core box's knee, so its ratios show the API itself; the second is the target load,
where the figures show whether the box keeps up (`saturated`) and which process spent the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench._common import print_figures, write_result
from devstack.ports import free_port, wait_for_port
from devstack.processes import spawn, stop_process
from devstack.temporal_server import TemporalDevServer
from devstack.tls import make_dev_ca
from gptimage2 import ProviderTask, Usage
from workflows.callback_token import mint_callback_token
from workflows.generation import VideoGenerationWorkflow
from workflows.models import CreateTaskInput, OutputObject, RehostInput
from workflows.search_attributes import SEARCH_ATTRIBUTES

API_KEY = "bench-secret-key"
CALLBACK_SECRET = "bench-callback-secret"


class IdleProvider:
    """Activities named as the real ones; every task stays `processing` (no encode, no S3)."""

    @activity.defn(name="create_task")
    async def create_task(self, request: CreateTaskInput) -> ProviderTask:
        return ProviderTask(
            id=f"task-bench-{uuid.uuid4().hex[:12]}",
            model=request.model,
            status="processing",
            progress=10,
            usage=Usage(credits_reserved=50.0),
        )

    @activity.defn(name="get_task")
    async def get_task(self, task_id: str) -> ProviderTask:
        return ProviderTask(id=task_id, status="processing", progress=50, usage=Usage(credits_reserved=50.0))

    @activity.defn(name="cancel_task")
    async def cancel_task(self, task_id: str) -> ProviderTask | None:
        return None

    @activity.defn(name="rehost_result")
    async def rehost_result(self, request: RehostInput) -> OutputObject:
        raise RuntimeError("tasks never complete in this benchmark")

    def activities(self) -> list[Any]:
        return [self.create_task, self.get_task, self.cancel_task, self.rehost_result]


async def serve_worker(address: str, task_queue: str) -> None:
    """The worker, in a process of its own as in production, so its workflow activations do not
    share an event loop with the load generator and skew its timing."""
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[VideoGenerationWorkflow],
        activities=IdleProvider().activities(),
    )
    await worker.run()


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)  # seconds, from the scheduled send
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def figures(self, prefix: str, seconds: float) -> dict[str, Any]:
        ms = sorted(x * 1000 for x in self.latencies)
        if not ms:
            return {f"{prefix} requests": 0, f"{prefix} errors": self.errors}
        return {
            f"{prefix} requests": len(ms),
            f"{prefix} achieved rate /s": len(ms) / seconds,
            f"{prefix} p50 ms": percentile(ms, 50),
            f"{prefix} p90 ms": percentile(ms, 90),
            f"{prefix} p99 ms": percentile(ms, 99),
            f"{prefix} max ms": ms[-1],
            f"{prefix} mean ms": statistics.fmean(ms),
            f"{prefix} non-2xx": sum(n for code, n in self.statuses.items() if not 200 <= code < 300),
            f"{prefix} transport errors": self.errors,
        }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to show where a phase's work went."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], pct: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def open_loop(
    rate: float, seconds: float, send: Callable[[int], Awaitable[int]], samples: Samples
) -> None:
    """Sends at a fixed schedule regardless of how long answers take (no coordinated omission:
    latency counts from when the request was due, so a stalled client or server shows up)."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    total = int(rate * seconds)
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        try:
            status = await send(i)
        except httpx.HTTPError:
            samples.errors += 1
            return
        samples.latencies.append(loop.time() - due)
        samples.statuses[status] = samples.statuses.get(status, 0) + 1

    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the open-loop schedule, not synchronisation
        task = asyncio.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-callbacks-") as tmp:
        root = Path(tmp)
        tls = make_dev_ca(root / "tls")
        temporal = TemporalDevServer.start(
            root / "temporal", headless=True, search_attributes=SEARCH_ATTRIBUTES
        )
        processes: list[subprocess.Popen[bytes]] = []
        try:
            temporal.wait_ready(60)
            task_queue = f"bench-{uuid.uuid4().hex[:8]}"
            port = free_port()
            env = {
                **os.environ,
                "TEMPORAL_ADDRESS": temporal.address,
                "TASK_QUEUE": task_queue,
                "API_KEYS": f"bench:{API_KEY}",
                "CALLBACK_SECRET": CALLBACK_SECRET,
                # The rate limit is not what is measured here.
                "API_RATE_LIMIT_PER_SECOND": "100000",
                "API_RATE_LIMIT_BURST": "100000",
            }
            argv = [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"]
            argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
            api_process = spawn(argv, cwd=Path.cwd(), log_path=root / "api.log", env=env)
            processes.append(api_process)
            wait_for_port("127.0.0.1", port, timeout=30)
            worker_argv = [
                sys.executable,
                "-m",
                "bench.bench_callbacks",
                "--serve-worker",
                temporal.address,
                task_queue,
            ]
            worker_process = spawn(worker_argv, cwd=Path.cwd(), log_path=root / "worker.log", env=env)
            processes.append(worker_process)
            async with (
                httpx.AsyncClient(
                    base_url=f"https://127.0.0.1:{port}",
                    verify=tls.ssl_context(),
                    timeout=30,
                    # Bounded, kept-alive connections, as a provider's sender would use: without a
                    # cap, a backlog turns into a storm of TLS handshakes on both sides.
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
                ) as http,
            ):
                pids = {
                    "api": api_process.pid,
                    "temporal": temporal.process.pid,
                    "worker": worker_process.pid,
                    "load generator": os.getpid(),
                }
                return await measure(http, args, pids)
        finally:
            for process in processes:
                stop_process(process)
            temporal.stop()


async def measure(http: httpx.AsyncClient, args: argparse.Namespace, pids: dict[str, int]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def post(i: int) -> int:
        body = {"user_id": f"bench-user-{i % 10}", "prompt": f"a bench scene number {i} {uuid.uuid4().hex}"}
        response = await http.post(
            "/v1/generations", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
        )
        return response.status_code

    # Running generations that receive the callbacks, each with its provider task created.
    paths: list[tuple[str, str]] = []
    for i in range(args.targets):
        response = await http.post(
            "/v1/generations",
            json={"user_id": "bench-target", "prompt": f"callback target {i}"},
            headers={**headers, "Idempotency-Key": f"target-{i}-{uuid.uuid4().hex}"},
        )
        response.raise_for_status()
        workflow_id = response.json()["id"]
        task_ids: list[str] = []
        while not task_ids:  # until the worker's create activity has run (set-up, not measured)
            found = await http.get(f"/v1/generations/{workflow_id}", headers=headers)
            task_ids = found.json()["provider_task_ids"]
        token = mint_callback_token(CALLBACK_SECRET, workflow_id)
        paths.append((f"/callbacks/gptimage2/{token}", task_ids[0]))
    statuses = ("processing", "completed", "failed")

    async def callback(i: int) -> int:
        path, task_id = paths[i % len(paths)]
        # A task object as the provider sends it. The first of each (task, status) wakes the
        # workflow (a re-read); repeats are duplicates it only records, as provider retries are.
        status = statuses[(i // len(paths)) % len(statuses)]
        task = {"id": task_id, "object": "video.generation.task", "status": status, "progress": 50}
        response = await http.post(path, json=task)
        return response.status_code

    # Warm-up: connections, caches, and one delivery of every (task, status) pair, so that every
    # measured callback costs the same (a duplicate hint the workflow records) in every phase;
    # otherwise whichever phase ran first would carry all the first-delivery re-reads.
    await open_loop(50.0, len(paths) * len(statuses) / 50.0, callback, Samples())

    figures: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "seconds per phase": args.seconds,
        "callback targets (workflows)": args.targets,
    }
    # One at a time on an idle system: the route's own latency, with no queueing at all.
    await quiesce(callback)
    idle = Samples()
    for i in range(100):
        sent = time.monotonic()
        status = await callback(i)
        idle.latencies.append(time.monotonic() - sent)
        idle.statuses[status] = idle.statuses.get(status, 0) + 1
    figures |= {k: v for k, v in idle.figures("idle sequential callbacks", 1.0).items() if "rate" not in k}
    for callback_rate, post_rate in args.points:
        at = f"@{callback_rate:g}+{post_rate:g}/s"
        phases: dict[str, dict[str, Samples]] = {
            "baseline": {"callbacks": Samples()},
            "mixed": {"callbacks": Samples(), "posts": Samples()},
        }
        for phase, samples in phases.items():
            figures[f"{at} {phase} quiesced after s"] = await quiesce(callback)
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            started = time.monotonic()
            loads = [open_loop(callback_rate, args.seconds, callback, samples["callbacks"])]
            if "posts" in samples:
                loads.append(open_loop(post_rate, args.seconds, post, samples["posts"]))
            await asyncio.gather(*loads)
            figures[f"{at} {phase} drained after s"] = time.monotonic() - started
            for kind, sample in samples.items():
                figures |= sample.figures(f"{at} {phase} {kind}", args.seconds)
            for name, pid in pids.items():
                figures[f"{at} {phase} cpu s: {name}"] = cpu_seconds(pid) - before[name]
        for pct in ("p50", "p99"):
            base = figures.get(f"{at} baseline callbacks {pct} ms")
            mixed = figures.get(f"{at} mixed callbacks {pct} ms")
            if base and mixed:
                figures[f"{at} callback {pct} ratio mixed/baseline"] = mixed / base
        requests = figures.get(f"{at} baseline callbacks requests") or 1
        figures[f"{at} api cpu ms per callback (baseline)"] = (
            figures[f"{at} baseline cpu s: api"] * 1000 / requests
        )
        # Answers still arriving long after the phase ended mean the box could not keep up.
        figures[f"{at} saturated"] = figures[f"{at} mixed drained after s"] > args.seconds + 2
    return figures


async def quiesce(callback: Callable[[int], Awaitable[int]], within: float = 120.0) -> float:
    """Waits until single callbacks answer quickly again (the previous phase's backlog in
    Temporal and the worker has drained), so each phase starts from the same idle state."""
    started = time.monotonic()
    fast = 0
    while fast < 5 and time.monotonic() - started < within:
        sent = time.monotonic()
        await callback(0)
        fast = fast + 1 if time.monotonic() - sent < 0.05 else 0
        await asyncio.sleep(0.2)  # spacing the probes; they must not become load themselves
    return time.monotonic() - started


def parse_points(text: str) -> list[tuple[float, float]]:
    points = []
    for part in text.split(","):
        callbacks, _, posts = part.partition(":")
        points.append((float(callbacks), float(posts or 0)))
    return points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_callbacks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    parser.add_argument(
        "--points",
        type=parse_points,
        default=parse_points("100:10,200:20"),
        help="callbacks/s:POSTs/s pairs, each measured as baseline (callbacks alone) then mixed",
    )
    parser.add_argument("--targets", type=int, default=100, help="running generations receiving callbacks")
    parser.add_argument("--serve-worker", nargs=2, metavar=("ADDRESS", "TASK_QUEUE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_worker:
        asyncio.run(serve_worker(*args.serve_worker))
        return
    started = time.monotonic()
    figures = asyncio.run(run(args))
    figures["wall seconds"] = time.monotonic() - started
    print_figures("callback route: baseline (callbacks alone) vs mixed (callbacks + POSTs)", figures)
    print(f"  written to {write_result('callbacks', figures)}")


if __name__ == "__main__":
    main()
