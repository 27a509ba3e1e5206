"""What the worker's metrics cost: generations/s with Prometheus metrics on (`worker_runtime`,
as `python worker.py` runs by default) against off, in the same run on the same servers.

Two workers, each on its own task queue, in one process, built as the product's is: one on a
client whose runtime serves metrics (scraped once per round, as Prometheus would), one on a
client without. Rounds alternate between them and the best round of each is kept (one round
alone swings with SQLite checkpoints); the median of the per-round ratios shows the noise.

Run: `python -m bench.bench_metrics [--generations 100] [--rounds 4]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

from devstack.exits import run_main
from devstack.ports import LOOPBACK, free_port
from devstack.testbed import Testbed
from temporal_client import connect
from worker import product_worker, worker_runtime

from ._common import Servers, publish, servers
from .bench_core import TIME_SCALE, generation_run


def _scrape(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


async def run(count: int, rounds: int) -> dict[str, Any]:
    with servers(time_scale=TIME_SCALE) as srv:
        return await _run(srv, count, rounds)


async def _run(srv: Servers, count: int, rounds: int) -> dict[str, Any]:
    bind = f"{LOOPBACK}:{free_port()}"
    metrics_url = f"http://{bind}/metrics"
    plain = await connect(srv.settings)
    metered = await connect(srv.settings, worker_runtime(bind))
    base = Testbed(plain, srv.settings, srv.sim, srv.s3, srv.tls, srv.api_url, srv.settings.task_queue)
    beds = {
        "off": base.with_task_queue("bench-metrics-off"),
        "on": replace(base, client=metered).with_task_queue("bench-metrics-on"),
    }
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    scrape_bytes = 0
    with ThreadPoolExecutor(max_workers=64) as executor:
        async with AsyncExitStack() as stack:
            provider = await stack.enter_async_context(base.provider())
            for tb in beds.values():
                await stack.enter_async_context(
                    product_worker(
                        tb.client, tb.settings, provider, task_queue=tb.task_queue, executor=executor
                    )
                )
            for tb in beds.values():  # warm up: encode the cached clip, open connections
                await generation_run(tb, 5, TIME_SCALE)
            for index in range(rounds):
                order = ("off", "on") if index % 2 == 0 else ("on", "off")
                for name in order:
                    results[name].append(
                        await generation_run(beds[name], count, TIME_SCALE, cpu=srv.cpu_seconds)
                    )
                scrape_bytes = await asyncio.to_thread(_scrape, metrics_url)
    off = max(results["off"], key=lambda r: r["generations_per_second"])
    on = max(results["on"], key=lambda r: r["generations_per_second"])
    return {
        "generations_per_round": count,
        "metrics_off_generations_per_second_rounds": [
            round(r["generations_per_second"], 1) for r in results["off"]
        ],
        "metrics_on_generations_per_second_rounds": [
            round(r["generations_per_second"], 1) for r in results["on"]
        ],
        "metrics_off_generations_per_second": off["generations_per_second"],
        "metrics_on_generations_per_second": on["generations_per_second"],
        "metrics_on_over_off": on["generations_per_second"] / off["generations_per_second"],
        "metrics_on_over_off_median_of_rounds": statistics.median(
            a["generations_per_second"] / b["generations_per_second"]
            for a, b in zip(results["on"], results["off"], strict=True)
        ),
        "metrics_off_worker_cpu_ms_per_generation": off.get("cpu_ms_bench+worker"),
        "metrics_on_worker_cpu_ms_per_generation": on.get("cpu_ms_bench+worker"),
        "scrape_bytes": scrape_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    figures = asyncio.run(run(args.generations, args.rounds))
    publish("metrics", "worker metrics on vs off (goal: on/off >= 0.95)", figures)


if __name__ == "__main__":
    run_main(main)
