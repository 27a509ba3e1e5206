"""`make soak`: many generations waiting on the provider at once, on one worker (issue 15).

`python -m bench.soak [--generations 10000] [--batch 1000]`

Its own servers on free ports and its own state (a temporary directory): Temporal dev server
(SQLite in WAL mode, as in production), SeaweedFS, the simulator and the API (which receives the
callbacks), each in its own process, and one `python worker.py` process with its Prometheus
metrics on. The default tuning of a generation, except its poll ceiling (`--poll-max`, see
below).

1. Hold: generations are started in batches of `--batch`. The simulator runs at real time and
   every task takes `HOLD_SECONDS` plus a little more per generation, so nothing completes by
   itself: after each batch, once every task of it exists at the simulator and the worker's
   workflow tasks are done, a sample is taken (worker RSS, sticky cache, Temporal server CPU,
   SQLite size): growth per 1,000 waiting generations.
2. Release: the simulator's clock jumps to the first task's end; the rest end in creation
   order (each `1 / --release-rate` simulated seconds after the one before), each with its
   callback, and are re-read, re-hosted and delivered. Sampled until every run has closed.
3. Check: every generation delivered, one provider task each, and the history of a sample of
   them priced (events, billable actions: bench/history_cost.py).

The poll ceiling: a poll is the safety net for a lost callback. With the default 60 s ceiling,
10,000 waiting generations poll 167 times a second between them; the soak measures the waiting
itself, so its ceiling is above the hold (callbacks are not dropped here) and the figure that
ceiling would cost is printed instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from devstack.exits import run_main
from devstack.ports import free_port
from devstack.processes import spawn, stop_process, wait_until
from devstack.testbed import settings_env
from temporal_client import connect
from workflows import search_attributes as sa
from workflows.models import GenerationInput, GenerationStatus

from ._common import ROOT, Servers, cpu_seconds, print_figures, servers, start_clip, write_result
from .history_cost import HistoryCost, cost_figures, history_cost

# Simulated seconds every task takes at least: far longer than any soak's hold phase.
HOLD_SECONDS = 1_000_000
# Concurrent start requests from this process.
STARTS_IN_FLIGHT = 32
# Histories priced at the end (fetching all 10,000 would cost more than the rest of the check).
PRICED_HISTORIES = 200
WORKFLOW_QUERY = "WorkflowType = 'VideoGenerationWorkflow'"
# The worker's Prometheus figures the soak reports (temporalio's sticky cache and slots).
STICKY = ("sticky_cache_size", "sticky_cache_hit", "sticky_cache_miss", "sticky_cache_total_forced_eviction")


@dataclass
class Sample:
    label: str
    generations: int  # started so far
    seconds: float  # since the soak started
    worker_rss_mib: float
    worker_peak_rss_mib: float
    sqlite_mib: float
    cpu: dict[str, float]  # cumulative CPU seconds by process
    sticky: dict[str, float]

    def row(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "generations": self.generations,
            "seconds": round(self.seconds, 1),
            "worker_rss_mib": round(self.worker_rss_mib, 1),
            "worker_peak_rss_mib": round(self.worker_peak_rss_mib, 1),
            "sqlite_mib": round(self.sqlite_mib, 2),
            **{f"cpu_s_{k}": round(v, 1) for k, v in self.cpu.items()},
            **{k: v for k, v in self.sticky.items()},
        }


def _status_kib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1])
    return 0.0


def sqlite_bytes(db: Path) -> int:
    """The database as it stands on disk: the main file and its write-ahead log."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


def scrape(metrics_url: str) -> dict[str, float]:
    """The worker's sticky-cache figures, summed over their labels."""
    found = dict.fromkeys(STICKY, 0.0)
    text = httpx.get(metrics_url, timeout=5).text
    for line in text.splitlines():
        match = re.match(r"^(?:temporal_)?(\w+?)(?:_total)?(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if match and match.group(1) in found:
            found[match.group(1)] += float(match.group(2))
    return found


class Soak:
    def __init__(self, srv: Servers, client: Client, worker_pid: int, metrics_url: str) -> None:
        self.srv, self.client = srv, client
        self.worker_pid, self.metrics_url = worker_pid, metrics_url
        self.started_at = time.monotonic()
        self.samples: list[Sample] = []
        self.ids: list[str] = []

    def sample(self, label: str) -> Sample:
        assert self.srv.temporal.db_path is not None
        pids = {**self.srv.pids, "worker": self.worker_pid, "soak": os.getpid()}
        sample = Sample(
            label=label,
            generations=len(self.ids),
            seconds=time.monotonic() - self.started_at,
            worker_rss_mib=_status_kib(self.worker_pid, "VmRSS") / 1024,
            worker_peak_rss_mib=_status_kib(self.worker_pid, "VmHWM") / 1024,
            sqlite_mib=sqlite_bytes(self.srv.temporal.db_path) / 2**20,
            cpu={name: cpu_seconds(pid) for name, pid in pids.items()},
            sticky=scrape(self.metrics_url),
        )
        self.samples.append(sample)
        row = sample.row()
        print(
            f"  {label:<14} gens {row['generations']:>6}  t {row['seconds']:>7}s  "
            f"worker RSS {row['worker_rss_mib']:>7} MiB  sqlite {row['sqlite_mib']:>8} MiB  "
            f"temporal cpu {row['cpu_s_temporal']:>7}s  worker cpu {row['cpu_s_worker']:>7}s  "
            f"sticky {int(sample.sticky['sticky_cache_size'])} "
            f"(hit {int(sample.sticky['sticky_cache_hit'])}, miss {int(sample.sticky['sticky_cache_miss'])}, "
            f"forced evictions {int(sample.sticky['sticky_cache_total_forced_eviction'])})",
            flush=True,
        )
        return sample

    async def start_batch(self, count: int, tuning: dict[str, Any], release_rate: float) -> None:
        gate = asyncio.Semaphore(STARTS_IN_FLIGHT)
        first = len(self.ids)

        async def one(index: int) -> str:
            # Each task a little longer than the one before: released, they end in this order.
            gen = HOLD_SECONDS + index / release_rate
            text = f"A soak clip {uuid.uuid4().hex[:8]} #gen={gen:.3f}"
            async with gate:
                started = await start_clip(
                    self.client,
                    self.srv.settings.task_queue,
                    text,
                    user_id=f"soak-{index % 50}",
                    tuning=tuning,
                )
            return started.view.id

        self.ids += await asyncio.gather(*(one(first + i) for i in range(count)))

    def tasks_created(self) -> int:
        return int(self.srv.sim.stats()["tasks_created"])

    async def running(self) -> int:
        return (await self.client.count_workflows(f"{WORKFLOW_QUERY} AND ExecutionStatus = 'Running'")).count

    async def waiting_and_quiet(self) -> bool:
        """Every started generation has its provider task and has gone to sleep on it: the
        simulator has every task, and the worker spent (almost) no CPU over two seconds."""
        if self.tasks_created() < len(self.ids):
            await asyncio.sleep(1)  # polling the simulator's counter, not synchronisation
            return False
        before = cpu_seconds(self.worker_pid)
        await asyncio.sleep(2)  # measuring the worker's idle CPU over two seconds
        return cpu_seconds(self.worker_pid) - before < 0.2


def per_thousand(first: Sample, last: Sample, generations: int) -> dict[str, float]:
    """Growth from `first` to `last`, per 1,000 generations."""
    scale = 1000 / max(1, generations)
    figures = {
        "worker_rss_mib": (last.worker_rss_mib - first.worker_rss_mib) * scale,
        "sqlite_mib": (last.sqlite_mib - first.sqlite_mib) * scale,
    }
    for name in last.cpu:
        figures[f"cpu_s_{name}"] = (last.cpu[name] - first.cpu[name]) * scale
    return figures


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    with servers(time_scale=1.0) as srv:
        metrics_port = free_port()
        worker = spawn(
            [
                sys.executable,
                "worker.py",
                "--metrics-bind",
                f"127.0.0.1:{metrics_port}",
                "--rehost-threads",
                str(args.rehost_threads),
            ],
            cwd=ROOT,
            log_path=srv.workdir / "worker.log",
            env={**os.environ, **settings_env(srv.settings)},
        )
        try:
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

            def metrics_up() -> bool:
                try:
                    return httpx.get(metrics_url, timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(
                metrics_up, timeout=60, what="worker", process=worker, log_path=srv.workdir / "worker.log"
            )
            client = await connect(srv.settings)
            return await _soak(Soak(srv, client, worker.pid, metrics_url), args)
        finally:
            stop_process(worker)


async def _soak(run: Soak, args: argparse.Namespace) -> dict[str, Any]:
    tuning = {"poll_max_seconds": args.poll_max}
    print(f"== soak: {args.generations} generations in batches of {args.batch}, one worker", flush=True)
    empty = run.sample("empty")
    while len(run.ids) < args.generations:
        await run.start_batch(min(args.batch, args.generations - len(run.ids)), tuning, args.release_rate)
        async with asyncio.timeout(1800):
            while not await run.waiting_and_quiet():
                pass
        run.sample("waiting")
    held = run.samples[-1]
    hold_seconds = held.seconds - empty.seconds

    # Release: the first task ends now, the others after it in creation order.
    clock = run.srv.sim.advance_clock(0)
    first_end = min(task["created"] for task in run.srv.sim.tasks()) + HOLD_SECONDS
    run.srv.sim.advance_clock(max(0.0, first_end - clock))
    released = time.monotonic()
    last_sample = released
    while (left := await run.running()) > 0:
        if time.monotonic() - last_sample >= args.sample_every:
            run.sample(f"release {left}")
            last_sample = time.monotonic()
        if time.monotonic() - released > args.release_timeout:
            raise RuntimeError(f"soak: {left} generations still running after {args.release_timeout} s")
        await asyncio.sleep(1)  # polling a count, not synchronisation
    release_seconds = time.monotonic() - released
    done = run.sample("delivered")

    delivered = (
        await run.client.count_workflows(
            f"{WORKFLOW_QUERY} AND {sa.STATUS.name} = '{GenerationStatus.DELIVERED.value}'"
        )
    ).count
    stats = run.srv.sim.stats()
    step = max(1, len(run.ids) // PRICED_HISTORIES)
    costs: list[HistoryCost] = []
    for workflow_id in run.ids[::step]:
        history = await run.client.get_workflow_handle(workflow_id).fetch_history()
        costs.append(history_cost(history.events))
    count = len(run.ids)
    waiting = per_thousand(empty, held, count)
    # Past the first batch the sticky cache is full (1,000 runs, the SDK's default): what more
    # waiting generations cost the worker from there.
    first_batch = next(s for s in run.samples if s.label == "waiting")
    beyond = per_thousand(first_batch, held, count - first_batch.generations)
    whole = per_thousand(empty, done, count)
    return {
        "generations": count,
        "delivered": delivered,
        "all_delivered": delivered == count,
        "provider_tasks_created": stats["tasks_created"],
        "callbacks_sent": stats["callbacks_sent"],
        "callbacks_failed": stats["callbacks_failed"],
        "callbacks_given_up": stats["callbacks_given_up"],
        "provider_reads": stats["gets_served"],
        "hold_phase_seconds": hold_seconds,
        "start_rate_per_second": count / hold_seconds,
        "release_phase_seconds": release_seconds,
        "delivery_rate_per_second": count / release_seconds,
        "worker_rss_empty_mib": empty.worker_rss_mib,
        "worker_rss_all_waiting_mib": held.worker_rss_mib,
        "worker_rss_after_mib": done.worker_rss_mib,
        "worker_peak_rss_mib": done.worker_peak_rss_mib,
        "sticky_cache_size_all_waiting": held.sticky["sticky_cache_size"],
        **{f"{k}_end": v for k, v in done.sticky.items()},
        "sqlite_all_waiting_mib": held.sqlite_mib,
        "sqlite_after_mib": done.sqlite_mib,
        "sqlite_kib_per_generation": (done.sqlite_mib - empty.sqlite_mib) * 1024 / count,
        **{f"waiting_per_1000_{k}": v for k, v in waiting.items()},
        "waiting_per_1000_beyond_the_first_batch_worker_rss_mib": beyond["worker_rss_mib"],
        **{f"whole_run_per_1000_{k}": v for k, v in whole.items()},
        "temporal_cpu_ms_per_generation": whole["cpu_s_temporal"],
        "worker_cpu_ms_per_generation": whole["cpu_s_worker"],
        "polls_per_second_at_the_default_60s_ceiling": count
        / GenerationInput.model_fields["poll_max_seconds"].default,
        **cost_figures(costs),
        "samples": [s.row() for s in run.samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--generations", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000, help="generations started between samples")
    parser.add_argument("--release-rate", type=float, default=50.0, help="tasks ending per simulated second")
    parser.add_argument(
        "--poll-max", type=float, default=3600.0, help="the generations' poll ceiling, seconds"
    )
    parser.add_argument("--rehost-threads", type=int, default=16)
    parser.add_argument("--sample-every", type=float, default=15.0, help="seconds between release samples")
    parser.add_argument("--release-timeout", type=float, default=3600.0)
    args = parser.parse_args()
    started = time.monotonic()
    figures = asyncio.run(soak(args))
    figures["wall_seconds"] = time.monotonic() - started
    samples = figures.pop("samples")
    print_figures(f"soak: {args.generations} generations waiting at once on one worker", figures)
    print(f"  written to {write_result('soak', {**figures, 'samples': samples})}")
    if not figures["all_delivered"]:
        sys.exit(f"soak: {figures['generations'] - figures['delivered']} generations not delivered")
    if figures["provider_tasks_created"] != figures["generations"]:
        sys.exit(
            f"soak: {figures['provider_tasks_created']} provider tasks for {figures['generations']} generations"
        )


if __name__ == "__main__":
    run_main(main)
