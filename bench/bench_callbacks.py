"""Callback route latency under load: does a stream of new generations slow the callbacks down?

The provider gives a callback 10 s and retries only 3 times, so the route must stay fast while
backend services are starting generations. Measured in one run, on this machine:

- baseline: callbacks alone at `--callback-rate` per second (open loop);
- mixed: the same callbacks plus `POST /v1/generations` at `--post-rate` per second;

and reported as p50/p99 of each plus the mixed/baseline ratios. Everything is real: the API
is `python -m api` (HTTPS, its own process), Temporal is the dev server in SQLite WAL mode,
the worker runs the real VideoGenerationWorkflow. Only the provider is an idle stand-in at the
activity boundary (tasks stay `processing`), so no video encoding competes for the CPU.

The callback stream: callbacks are sent for terminal states, so in a steady state first
deliveries arrive about as fast as generations start; by default one in every
callbacks/POSTs is a first delivery (a new (task, status) pair: a signal, a workflow task and a
re-read) and the rest repeat pairs delivered in the last seconds, as the provider's retries and
duplicates do. Each kind is reported on its own. The API answers a repeat it has delivered
itself without another signal; the last point is measured again against a second API process
with that turned off (`API_CALLBACK_DEDUP_ENTRIES=0`), where every repeat is signalled and the
workflow discards it, to show what that saves.

Run: `python -m bench.bench_callbacks [--seconds 10] [--points 100:10,200:20]`. The first point
is below a 2-core box's knee, so its ratios show the API itself; the second is the target load,
where the figures show whether the box keeps up (`saturated`) and which process spent the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import ssl
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

import aiohttp

from bench._common import cpu_seconds, publish
from devstack.exits import run_main
from devstack.ports import free_port, wait_for_port
from devstack.processes import spawn, stop_process
from devstack.temporal_server import TemporalDevServer
from devstack.testbed import TESTBED_ENCRYPTION_KEYS
from devstack.tls import make_dev_ca
from settings import DEV_ENVIRONMENT, get_settings
from temporal_client import connect
from tests.helpers.fake_provider import FakeProvider
from worker import build_worker
from workflows.callback_token import CALLBACK_PATH, mint_callback_token
from workflows.report import percentile
from workflows.search_attributes import SEARCH_ATTRIBUTES

API_KEY = "bench-secret-key"
# Kept-alive connections, as a provider's sender would use; requests beyond them queue in the
# client (latency still counts from when each was due).
CONNECTIONS = 64


@dataclass
class Reply:
    status_code: int
    body: Any

    def json(self) -> Any:
        return self.body

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.body}")


class Http:
    """The load generator's HTTP client: aiohttp, whose C parser and connection pool cost a
    fraction of the CPU per request that httpx does. On a 2-core box the load generator shares
    the cores with the system under test, so its cost shows up in the figures."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext) -> None:
        self.base_url = base_url
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS, ssl=ssl_context),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def post(self, path: str, *, json: Any, headers: dict[str, str] | None = None) -> Reply:
        async with self._session.post(self.base_url + path, json=json, headers=headers) as response:
            return Reply(response.status, await response.json(content_type=None))

    async def get(self, path: str, *, headers: dict[str, str] | None = None) -> Reply:
        async with self._session.get(self.base_url + path, headers=headers) as response:
            return Reply(response.status, await response.json(content_type=None))

    async def __aenter__(self) -> Http:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()


CALLBACK_SECRET = "bench-callback-secret"


async def serve_worker(address: str, task_queue: str) -> None:
    """The worker, in a process of its own as in production, so its workflow activations do not
    share an event loop with the load generator and skew its timing."""
    settings = get_settings()  # this process's environment: the bench's dev flag and history key
    client = await connect(settings.model_copy(update={"temporal_address": address}))
    # The tests' stand-in provider: every task stays `processing` (no encode, no S3).
    await build_worker(client, task_queue, FakeProvider(prefix="task-bench").activities()).run()


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)  # seconds, from the scheduled send
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def add(self, seconds: float, status: int) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

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


async def open_loop(
    rate: float,
    seconds: float,
    send: Callable[[int], Awaitable[int]],
    samples: Samples,
    also: Callable[[int], Samples] | None = None,
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
        except (aiohttp.ClientError, TimeoutError):
            samples.errors += 1
            return
        samples.add(loop.time() - due, status)
        if also is not None:  # a second breakdown, e.g. by kind of request
            also(i).add(loop.time() - due, status)

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
                "ENVIRONMENT": DEV_ENVIRONMENT,
                "HISTORY_ENCRYPTION_KEYS": TESTBED_ENCRYPTION_KEYS.get_secret_value(),
                "API_KEYS": f"bench:{API_KEY}",
                "CALLBACK_SECRET": CALLBACK_SECRET,
                # The rate limit is not what is measured here.
                "API_RATE_LIMIT_PER_SECOND": "100000",
                "API_RATE_LIMIT_BURST": "100000",
            }
            ports = {"edge dedup": port, "no edge dedup": free_port()}
            for name, api_port in ports.items():
                argv = [sys.executable, "-m", "api", "--port", str(api_port), "--log-level", "warning"]
                argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
                api_env = env if name == "edge dedup" else {**env, "API_CALLBACK_DEDUP_ENTRIES": "0"}
                log = root / f"api-{api_port}.log"
                processes.append(spawn(argv, cwd=Path.cwd(), log_path=log, env=api_env))
                wait_for_port("127.0.0.1", api_port, timeout=30)
            api_process, plain_api_process = processes
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
            verify = tls.ssl_context()
            async with (
                Http(f"https://127.0.0.1:{port}", verify) as http,
                Http(f"https://127.0.0.1:{ports['no edge dedup']}", verify) as plain_http,
            ):
                pids = {
                    "api": api_process.pid,
                    "temporal": temporal.process.pid,
                    "worker": worker_process.pid,
                    "load generator": os.getpid(),
                }
                rig = await prepare(http, args)
                figures = await measure(http, rig, args, pids)
                # The last point again, against the API that signals every repeat.
                pids["api"] = plain_api_process.pid
                figures |= await measure_point(plain_http, rig, args, pids, args.points[-1], "no edge dedup")
                return figures
        finally:
            for process in processes:
                stop_process(process)
            temporal.stop()


STATUSES = ("completed", "failed", "cancelled", "processing")
RECENT = 200  # repeats pick among the pairs first delivered most recently (the last seconds)


@dataclass
class Target:
    path: str  # the callback URL path (its token names the generation)
    task_id: str


class CallbackStream:
    """Which callback each send is: every `every`-th a first delivery of a fresh (task, status)
    pair, the others repeats of recently delivered ones. Pairs are used once per benchmark run,
    so a first delivery is news to its workflow in every phase."""

    def __init__(self, targets: list[Target], seed: int = 1) -> None:
        self._fresh = iter([(t, status) for status in STATUSES for t in targets])
        self._recent: list[tuple[Target, str]] = []
        self._rng = random.Random(seed)

    def pick(self, first: bool) -> tuple[Target, str]:
        if first or not self._recent:
            pair = next(self._fresh, None)
            if pair is None:
                raise SystemExit("out of fresh (task, status) pairs: raise --targets")
            self._recent = [*self._recent[-(RECENT - 1) :], pair]
            return pair
        return self._rng.choice(self._recent)


def first_deliveries_needed(args: argparse.Namespace) -> int:
    """Fresh pairs the run uses: two phases per point, plus the last point again, plus margin."""
    points = [*args.points, args.points[-1]]
    return (
        int(sum(2 * args.seconds * callbacks / every_nth(callbacks, posts) for callbacks, posts in points))
        + 100
    )


def every_nth(callback_rate: float, post_rate: float) -> int:
    """One callback in this many is a first delivery: as many per second as POSTs."""
    return max(1, round(callback_rate / post_rate)) if post_rate else 10


@dataclass
class Rig:
    stream: CallbackStream
    probe_path: str  # a generation that takes the probes, so they never touch the measured ones
    targets: int

    async def probe(self, http: Http) -> None:
        """A callback that is always news (an unknown task id): it reaches the workflow."""
        task = {"id": f"probe-{uuid.uuid4().hex[:12]}", "status": "completed"}
        (await http.post(self.probe_path, json=task)).raise_for_status()


async def prepare(http: Http, args: argparse.Namespace) -> Rig:
    """Running generations that receive the callbacks, each with its provider task created."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    count = args.targets or -(-first_deliveries_needed(args) // len(STATUSES))
    workflow_ids = []
    for i in range(count + 1):
        response = await http.post(
            "/v1/generations",
            json={"user_id": "bench-target", "prompt": f"callback target {i}"},
            headers={**headers, "Idempotency-Key": f"target-{i}-{uuid.uuid4().hex}"},
        )
        response.raise_for_status()
        workflow_ids.append(response.json()["id"])
    targets = []
    for workflow_id in workflow_ids:  # set-up, not measured: until each create activity has run
        task_ids: list[str] = []
        while not task_ids:
            found = await http.get(f"/v1/generations/{workflow_id}", headers=headers)
            task_ids = found.json()["provider_task_ids"]
        path = CALLBACK_PATH + mint_callback_token(CALLBACK_SECRET, workflow_id)
        targets.append(Target(path, task_ids[0]))
    probe, *measured = targets
    return Rig(CallbackStream(measured), probe.path, len(measured))


async def measure(http: Http, rig: Rig, args: argparse.Namespace, pids: dict[str, int]) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "seconds per phase": args.seconds,
        "callback targets (workflows)": rig.targets,
    }
    # One at a time on an idle system: the route's own latency, with no queueing at all.
    await quiesce(lambda: rig.probe(http))
    idle = {"first": Samples(), "repeat": Samples()}
    for i in range(100):
        kind = "first" if i % 2 == 0 else "repeat"
        target, status = rig.stream.pick(kind == "first")
        sent = time.monotonic()
        response = await http.post(target.path, json=task_body(target, status))
        idle[kind].add(time.monotonic() - sent, response.status_code)
    for kind, sample in idle.items():
        prefix = f"idle sequential {kind} callbacks"
        figures |= {k: v for k, v in sample.figures(prefix, 1.0).items() if "rate" not in k}
    for point in args.points:
        figures |= await measure_point(http, rig, args, pids, point)
    return figures


def _kind(samples: dict[str, Samples], every: int, i: int) -> Samples:
    return samples["first deliveries" if i % every == 0 else "repeats"]


def task_body(target: Target, status: str) -> dict[str, Any]:
    """A task object as the provider sends it."""
    return {"id": target.task_id, "object": "video.generation.task", "status": status, "progress": 50}


async def measure_point(
    http: Http,
    rig: Rig,
    args: argparse.Namespace,
    pids: dict[str, int],
    point: tuple[float, float],
    label: str = "",
) -> dict[str, Any]:
    callback_rate, post_rate = point
    headers = {"Authorization": f"Bearer {API_KEY}"}
    every = every_nth(callback_rate, post_rate)

    async def post(i: int) -> int:
        body = {"user_id": f"bench-user-{i % 10}", "prompt": f"a bench scene number {i} {uuid.uuid4().hex}"}
        response = await http.post(
            "/v1/generations", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
        )
        return response.status_code

    at = f"@{callback_rate:g}+{post_rate:g}/s{' ' + label if label else ''}"
    figures: dict[str, Any] = {}

    async def callback(i: int) -> int:
        target, status = rig.stream.pick(i % every == 0)
        response = await http.post(target.path, json=task_body(target, status))
        return response.status_code

    for phase in ("baseline", "mixed"):
        samples = {"callbacks": Samples(), "first deliveries": Samples(), "repeats": Samples()}
        posts = Samples()
        figures[f"{at} {phase} quiesced after s"] = await quiesce(lambda: rig.probe(http))
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        by_kind = functools.partial(_kind, samples, every)
        loads = [open_loop(callback_rate, args.seconds, callback, samples["callbacks"], also=by_kind)]
        if phase == "mixed":
            loads.append(open_loop(post_rate, args.seconds, post, posts))
        await asyncio.gather(*loads)
        figures[f"{at} {phase} drained after s"] = time.monotonic() - started
        for kind, sample in samples.items():
            figures |= sample.figures(f"{at} {phase} {kind}", args.seconds)
        if phase == "mixed":
            figures |= posts.figures(f"{at} {phase} posts", args.seconds)
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


async def quiesce(probe: Callable[[], Awaitable[None]], within: float = 120.0) -> float:
    """Waits until a signalled callback answers quickly again (the previous phase's backlog in
    Temporal and the worker has drained), so each phase starts from the same idle state."""
    started = time.monotonic()
    fast = 0
    while fast < 5 and time.monotonic() - started < within:
        sent = time.monotonic()
        await probe()
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
    parser.add_argument(
        "--targets",
        type=int,
        default=0,
        help="running generations receiving callbacks (default: as many as needed)",
    )
    parser.add_argument("--serve-worker", nargs=2, metavar=("ADDRESS", "TASK_QUEUE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_worker:
        asyncio.run(serve_worker(*args.serve_worker))
        return
    started = time.monotonic()
    figures = asyncio.run(run(args))
    figures["wall seconds"] = time.monotonic() - started
    publish("callbacks", "callback route: baseline (callbacks alone) vs mixed (callbacks + POSTs)", figures)


if __name__ == "__main__":
    run_main(main)
