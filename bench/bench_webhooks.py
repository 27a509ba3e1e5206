"""Webhooks' cost (issue 14). `python -m bench.bench_webhooks`

Generations/s for N generations with webhooks off and on (every event to a receiver in a
process of its own, answering 204 on kept HTTP/1.1 connections), in pairs of rounds on the
same servers and worker, the pair's first mode alternating (off-on, on-off, ...); each
on-round waits for its deliveries before the next round starts, so none spills into an
off-round. Goal: on/off >= 0.95 (webhooks add at most 5 %), judged on the pairs' ratios:
their geometric mean and its 95 % confidence interval (`paired_ratio`), which says met, not
met, or not resolved (the machine's noise is wider than the question).

Twice, as bench_core's throughput: with every process sharing the machine's CPUs, and
isolated (`Servers.isolated`), the system under test on half of them and the stand-ins for
what runs elsewhere in production (the simulator, SeaweedFS, and here the receiver, which is
the customer's) on the other half. The goal is judged isolated.

Also, per generation and mode (the mean of the rounds): the CPU each process spent (the
receiver's too: it shares the machine's cores, though in production it is the customer's),
their total's on/off, the history events of the generation, and the delivery workflows
started (only for an event the generation's own immediate attempt did not settle).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.exits import run_main
from devstack.ports import free_port
from devstack.testbed import Testbed
from worker import product_worker
from workflows.webhook_delivery import WebhookDeliveryWorkflow
from workflows.webhook_plan import NOTIFY_URL_ENDPOINT, EventType, PlannedTarget, WebhookPlan

from ._common import NOT_ISOLATED, Servers, cpu_seconds, paired_ratio, publish, servers
from .bench_core import TIME_SCALE, generation_run

PAIRS = 8
GOAL = 0.95
WARM_UP = 5  # generations each way before the rounds


def _receive(port: int, received: Any) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps connections, as any receiver's framework does

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
def receiver() -> Iterator[tuple[str, Any, int]]:
    """A receiver process: its URL, the count of deliveries it accepted and its pid."""
    port, received = free_port(), multiprocessing.Value("i", 0)
    process = multiprocessing.Process(target=_receive, args=(port, received), daemon=True)
    process.start()
    assert process.pid is not None
    try:
        yield f"http://127.0.0.1:{port}/hooks", received, process.pid
    finally:
        process.terminate()
        process.join()


async def run(count: int, pairs: int = PAIRS) -> dict[str, Any]:
    with servers(time_scale=TIME_SCALE) as srv:
        return await _run(srv, count, pairs)


async def _run(srv: Servers, count: int, pairs: int) -> dict[str, Any]:
    tb = await srv.testbed()
    client = tb.client
    with receiver() as (url, received, receiver_pid), ThreadPoolExecutor(max_workers=64) as executor:
        plan = WebhookPlan(
            targets=[PlannedTarget(endpoint_id=NOTIFY_URL_ENDPOINT, events=list(EventType), url=url)]
        )

        def cpu() -> dict[str, float]:
            return {**srv.cpu_seconds(), "receiver": cpu_seconds(receiver_pid)}

        async def delivered(expected: int) -> float:
            started = time.perf_counter()
            while received.value < expected:
                await asyncio.sleep(0.05)  # another process counts: nothing to await
            return time.perf_counter() - started

        async with (
            tb.provider() as provider,
            product_worker(client, tb.settings, provider, executor=executor),
        ):
            await generation_run(tb, WARM_UP, TIME_SCALE)
            await generation_run(tb, WARM_UP, TIME_SCALE, webhooks=plan)
            await delivered(WARM_UP)
            measured = await srv.shared_and_isolated(
                lambda: _rounds(tb, count, pairs, cpu, plan, delivered, received), receiver_pid
            )
            deliveries = await client.count_workflows(f"WorkflowType = '{WebhookDeliveryWorkflow.__name__}'")
    return {
        "generations": count,
        **measured,
        "webhooks_received": received.value,
        # Each round's on-generations ran twice (shared, isolated) unless the machine could not isolate.
        "delivery_workflows_per_on_generation": deliveries.count
        / (WARM_UP + count * pairs * (1 if NOT_ISOLATED.items() <= measured.items() else 2)),
    }


async def _rounds(
    tb: Testbed,
    count: int,
    pairs: int,
    cpu: Callable[[], dict[str, float]],
    plan: WebhookPlan,
    delivered: Callable[[int], Awaitable[float]],
    received: Any,
) -> dict[str, Any]:
    """`pairs` pairs of rounds of `count` generations each, webhooks off and on, the first mode
    of a pair alternating so that a drift of the machine's speed weighs on both alike."""
    off_rounds, on_rounds, tails = [], [], []

    async def off_round() -> None:
        off_rounds.append(await generation_run(tb, count, TIME_SCALE, cpu=cpu))

    async def on_round() -> None:
        expected = received.value + count
        on_rounds.append(await generation_run(tb, count, TIME_SCALE, cpu=cpu, webhooks=plan))
        tails.append(await delivered(expected))

    for pair in range(pairs):
        for one_round in (off_round, on_round) if pair % 2 == 0 else (on_round, off_round):
            await one_round()
    off = max(r["generations_per_second"] for r in off_rounds)
    on = max(r["generations_per_second"] for r in on_rounds)
    off_cpu, on_cpu = _mean_cpu(off_rounds), _mean_cpu(on_rounds)
    ratios = [
        a["generations_per_second"] / b["generations_per_second"]
        for a, b in zip(on_rounds, off_rounds, strict=True)
    ]
    return {
        **{f"on_over_off_{k}": v for k, v in paired_ratio(ratios, GOAL).items()},
        "off_generations_per_second_rounds": [round(r["generations_per_second"], 2) for r in off_rounds],
        "on_generations_per_second_rounds": [round(r["generations_per_second"], 2) for r in on_rounds],
        "off_generations_per_second": off,
        "on_generations_per_second": on,
        "on_over_off": on / off,
        "on_over_off_median_of_rounds": statistics.median(ratios),
        "last_delivery_after_last_result_seconds_max": max(tails),
        **{f"off_cpu_ms_{k}": v for k, v in off_cpu.items()},
        **{f"on_cpu_ms_{k}": v for k, v in on_cpu.items()},
        "cpu_per_generation_on_over_off": sum(on_cpu.values()) / sum(off_cpu.values()),
        "cpu_per_generation_on_over_off_without_receiver": (sum(on_cpu.values()) - on_cpu["receiver"])
        / (sum(off_cpu.values()) - off_cpu["receiver"]),
        "off_history_events_per_generation": statistics.mean(
            r["history_events_per_delivered"] for r in off_rounds
        ),
        "on_history_events_per_generation": statistics.mean(
            r["history_events_per_delivered"] for r in on_rounds
        ),
        "on_commonest_history": on_rounds[-1]["commonest_history"],
    }


def _mean_cpu(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """CPU ms per generation of each process, the mean of the rounds."""
    keys = [k for k in rounds[0] if k.startswith("cpu_ms_")]
    return {k.removeprefix("cpu_ms_"): statistics.mean(r[k] for r in rounds) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument(
        "--pairs", type=int, default=PAIRS, help="pairs of rounds per layout (more: a narrower interval)"
    )
    args = parser.parse_args()
    if args.pairs < 2:
        parser.error("--pairs: at least 2 (a confidence interval needs two pairs)")
    figures = asyncio.run(run(args.generations, args.pairs))
    publish("webhooks", f"webhooks (goal: isolated on/off >= {GOAL}, its verdict)", figures)


if __name__ == "__main__":
    run_main(main)
