"""Webhooks' cost (issue 14). `python -m bench.bench_webhooks`

Generations/s for N generations with webhooks off and on (every event to a receiver in a
process of its own, answering 200), in interleaved rounds on the same servers and worker; each
on-round waits for its deliveries before the next round starts, so none spills into an
off-round. Goal: on/off >= 0.95 (webhooks add at most 5 %).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.exits import run_main
from devstack.ports import free_port
from devstack.testbed import Testbed
from temporal_client import connect
from worker import product_worker
from workflows.webhook_plan import NOTIFY_URL_ENDPOINT, EventType, PlannedTarget, WebhookPlan

from ._common import Servers, print_figures, servers, write_result
from .bench_core import TIME_SCALE, generation_run

ROUNDS = 3


def _receive(port: int, received: Any) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(204)
            self.end_headers()
            with received.get_lock():
                received.value += 1

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


@contextmanager
def receiver() -> Iterator[tuple[str, Any]]:
    """A receiver process: its URL and the count of deliveries it accepted."""
    port, received = free_port(), multiprocessing.Value("i", 0)
    process = multiprocessing.Process(target=_receive, args=(port, received), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{port}/hooks", received
    finally:
        process.terminate()
        process.join()


async def run(count: int) -> dict[str, Any]:
    with servers(time_scale=TIME_SCALE) as srv:
        return await _run(srv, count)


async def _run(srv: Servers, count: int) -> dict[str, Any]:
    client = await connect(srv.settings)
    tb = Testbed(client, srv.settings, srv.sim, srv.s3, srv.tls, srv.api_url, srv.settings.task_queue)
    with receiver() as (url, received), ThreadPoolExecutor(max_workers=64) as executor:
        plan = WebhookPlan(
            targets=[PlannedTarget(endpoint_id=NOTIFY_URL_ENDPOINT, events=list(EventType), url=url)]
        )

        async def delivered(expected: int) -> float:
            started = time.perf_counter()
            while received.value < expected:
                await asyncio.sleep(0.05)  # another process counts: nothing to await
            return time.perf_counter() - started

        async with (
            tb.provider() as provider,
            product_worker(client, tb.settings, provider, executor=executor),
        ):
            await generation_run(tb, 5, TIME_SCALE)  # warm up
            await generation_run(tb, 5, TIME_SCALE, webhooks=plan)
            await delivered(5)
            off_rounds, on_rounds, tails = [], [], []
            for _ in range(ROUNDS):
                off_rounds.append(await generation_run(tb, count, TIME_SCALE, cpu=srv.cpu_seconds))
                expected = received.value + count
                on_rounds.append(
                    await generation_run(tb, count, TIME_SCALE, cpu=srv.cpu_seconds, webhooks=plan)
                )
                tails.append(await delivered(expected))
    off = max(r["generations_per_second"] for r in off_rounds)
    on = max(r["generations_per_second"] for r in on_rounds)
    best_on = max(on_rounds, key=lambda r: r["generations_per_second"])
    best_off = max(off_rounds, key=lambda r: r["generations_per_second"])
    return {
        "generations": count,
        "off_generations_per_second_rounds": [round(r["generations_per_second"], 2) for r in off_rounds],
        "on_generations_per_second_rounds": [round(r["generations_per_second"], 2) for r in on_rounds],
        "off_generations_per_second": off,
        "on_generations_per_second": on,
        "on_over_off": on / off,
        "on_over_off_median_of_rounds": statistics.median(
            a["generations_per_second"] / b["generations_per_second"]
            for a, b in zip(on_rounds, off_rounds, strict=True)
        ),
        "webhooks_received": received.value,
        "last_delivery_after_last_result_seconds_max": max(tails),
        **{f"off_cpu_ms_{k.split('_', 2)[2]}": v for k, v in best_off.items() if k.startswith("cpu_ms_")},
        **{f"on_cpu_ms_{k.split('_', 2)[2]}": v for k, v in best_on.items() if k.startswith("cpu_ms_")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generations", type=int, default=100)
    args = parser.parse_args()
    figures = asyncio.run(run(args.generations))
    print_figures("webhooks (goal: on/off >= 0.95)", figures)
    print(f"  written to {write_result('webhooks', figures)}")


if __name__ == "__main__":
    run_main(main)
