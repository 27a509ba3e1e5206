"""The seven scenarios of issue 15's table. Each breaks one thing (or several) while generations
run, then checks the outcome (harness.Checked) and returns its one line of counts."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio.client import WorkflowExecutionStatus

from chaos.harness import Checked, Expect, Harness, Started
from workflows.callback_token import CALLBACK_PATH
from workflows.models import GenerationView, RetryBudget

MIB = 1 << 20


@dataclass
class Outcome:
    number: int
    title: str
    checked: Checked
    seconds: float

    def line(self) -> str:
        counts = "; ".join(f"{name} {_shown(value)}" for name, value in self.checked.counts.items())
        return f"[{self.number}] {self.title}: {counts}; lost {self.checked.lost}; {self.seconds:.0f} s"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items()))
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


Scenario = Callable[[Harness, int], Awaitable[Outcome]]


async def _run_with(
    harness: Harness, generations: list[Started], within: float
) -> tuple[list[GenerationView], Checked]:
    views = await harness.settle(generations, within)
    checked = await harness.check(generations, views)
    return views, checked


# ---- 1. worker SIGKILL -----------------------------------------------------------------------


async def worker_sigkill(harness: Harness, count: int) -> Outcome:
    """A random one of the workers SIGKILLed (and restarted) every ~5 s while `count`
    generations run, a third of them with results big and slow enough (16 MiB at 2 MB/s) that
    kills land mid re-host."""
    began = time.monotonic()
    plan: list[tuple[str, Expect]] = [
        (f"Kill me {i}" + (f" #size={16 * MIB} #rate=2m" if i % 3 == 0 else ""), Expect.DELIVERED)
        for i in range(count)
    ]
    kills = 0
    done = asyncio.Event()

    async def killer() -> None:
        nonlocal kills
        while not done.is_set():
            await asyncio.sleep(harness.rng.uniform(4.0, 6.0))  # the fault's rhythm
            harness.servers.kill_worker(harness.rng.randrange(len(harness.servers.worker_processes)))
            kills += 1

    before = await asyncio.to_thread(harness.servers.sim.stats)
    killing = asyncio.create_task(killer())
    try:
        generations = await harness.start_paced(plan, per_second=2)
        views = await harness.settle(generations, within=600)
    finally:
        done.set()
        await killing
    after = await asyncio.to_thread(harness.servers.sim.stats)
    checked = await harness.check(generations, views)
    stored = sum(o.size_bytes for v in views for o in v.outputs)
    served = after["download_bytes_served"] - before["download_bytes_served"]
    checked.counts = {
        "delivered": f"{_delivered(views)}/{count}",
        "kills": kills,
        **(await harness.history_counts(generations)),
        "bytes re-fetched": f"{(served - stored) / MIB:.1f} MiB",
        **checked.counts,
    }
    _ops_counts(harness, checked)
    return Outcome(1, "worker SIGKILL every ~5 s", checked, time.monotonic() - began)


# ---- 2. object store down ----------------------------------------------------------------------


async def store_down(harness: Harness, count: int) -> Outcome:
    """SeaweedFS stopped for 60 s while `count` generations reach their re-host."""
    began = time.monotonic()
    plan: list[tuple[str, Expect]] = [
        (f"No store {i}" + (f" #size={8 * MIB}" if i % 4 == 0 else ""), Expect.DELIVERED)
        for i in range(count)
    ]
    generations = await harness.start_paced(plan, per_second=10)
    harness.servers.stop_s3()
    down_at = time.monotonic()
    await asyncio.sleep(60)  # the outage itself
    harness.servers.start_s3()
    await asyncio.to_thread(harness.servers.s3.wait_ready, 120)
    back = time.monotonic()
    harness.refresh_store()
    views, checked = await _run_with(harness, generations, within=400)
    last = max((v.updated_at for v in views if v.updated_at), default=None)
    first = min((v.created_at for v in views if v.created_at), default=None)
    checked.counts = {
        "delivered": f"{_delivered(views)}/{count}",
        "store down": f"{back - down_at:.0f} s",
        "all delivered within": f"{(last - first).total_seconds():.0f} s of the first start"
        if last and first
        else "-",
        **(await harness.history_counts(generations)),
        **checked.counts,
    }
    _ops_counts(harness, checked)
    return Outcome(2, "object store down 60 s", checked, time.monotonic() - began)


# ---- 3. Temporal server restart ----------------------------------------------------------------


async def temporal_restart(harness: Harness, count: int) -> Outcome:
    """The Temporal server stopped with SIGTERM, then (another round) killed with SIGKILL, and
    started again on the same port and SQLite file, with `count` generations in flight each
    time. Recovery: from the stop until the API answers a generation's live view again (a
    query: the API's client reconnected and a worker answered)."""
    began = time.monotonic()
    recoveries = []
    generations: list[Started] = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        plan: list[tuple[str, Expect]] = [
            (f"Server gone {sig.name} {i} #gen=300", Expect.DELIVERED) for i in range(count)
        ]
        in_flight = await harness.start_paced(plan, per_second=10)
        generations += in_flight
        await asyncio.sleep(3)  # let them get going: the restart must find them mid-flight
        stopped = time.monotonic()
        await asyncio.to_thread(harness.servers.stop_temporal, sig)
        harness.servers.start_temporal()
        await asyncio.to_thread(harness.servers.temporal.wait_ready, 120)
        serving = time.monotonic() - stopped
        live = await _until_api_answers(harness, in_flight[0])
        recoveries.append(
            f"{sig.name} serving again after {serving:.1f} s, API live view after {live - stopped:.1f} s"
        )
    views, checked = await _run_with(harness, generations, within=400)
    checked.counts = {
        "delivered": f"{_delivered(views)}/{len(generations)}",
        "recovery": ", ".join(recoveries),
        **checked.counts,
    }
    _ops_counts(harness, checked)
    return Outcome(3, "Temporal restart (SIGTERM, SIGKILL; same SQLite)", checked, time.monotonic() - began)


async def _until_api_answers(harness: Harness, started: Started) -> float:
    while True:
        try:
            response = await harness.api.get(f"/v1/generations/{started.id}")
            if response.status_code == 200 and "last indexed state" not in response.text:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)  # probing a recovery's end: the measurement's resolution


# ---- 4. callback chaos ---------------------------------------------------------------------------


async def callback_chaos(harness: Harness, count: int) -> Outcome:
    """Callbacks duplicated x3, 30 % dropped, reordered, delayed past the poll interval; and
    forged ones (wrong tokens, valid-looking bodies) for every generation."""
    began = time.monotonic()
    sim = harness.servers.sim
    before = await asyncio.to_thread(sim.stats)
    await asyncio.to_thread(
        sim.set_config,
        callback_duplicate_rate=1.0,
        callback_duplicate_copies=3,
        callback_drop_rate=0.3,
        callback_reorder=True,
        callback_reorder_window_seconds=2.0,
        callback_delay_seconds=POLL_PAST,
    )
    try:
        # 5 to 25 s each (at the run's time scale), so callbacks and polls race throughout.
        generations = await harness.start_paced(
            [(f"Noisy callbacks {i} #gen={100 + 20 * (i % 21)}", Expect.DELIVERED) for i in range(count)],
            per_second=5,
        )
        forged = refused = 0
        for started in generations:
            for token in _forged_tokens(started.id):
                forged += 1
                body = {
                    "id": f"task-unified-{int(time.time())}-forged00",
                    "status": "completed",
                    "progress": 100,
                }
                response = await harness.api.post(f"{CALLBACK_PATH}{token}", json=body)
                refused += response.status_code in (401, 404)
        views, checked = await _run_with(harness, generations, within=400)
        # Late, duplicated and reordered callbacks still arriving reach ended generations: all
        # of them are in before counting (and the executions' status is checked again).
        after = await asyncio.to_thread(_callbacks_drained, harness)
        checked.problems += [
            f"{g.id}: execution {status} after late callbacks"
            for g, status in zip(generations, await harness.execution_statuses(generations), strict=True)
            if status != WorkflowExecutionStatus.COMPLETED
        ]
    finally:
        await asyncio.to_thread(sim.reset_config)
    tasks = after["tasks_created"] - before["tasks_created"]
    reads = after["gets_served"] - before["gets_served"]
    forged_seen = sum(1 for v in views for o in v.orphans if o.task_id.endswith("forged00"))
    if refused != forged or forged_seen:
        checked.problems.append(
            f"forged callbacks: {refused} of {forged} refused, {forged_seen} reached a generation"
        )
    checked.counts = {
        "delivered": f"{_delivered(views)}/{count}",
        "forged refused": f"{refused}/{forged}",
        "callbacks delivered": after["callbacks_delivered"] - before["callbacks_delivered"],
        "dropped": after["callbacks_dropped"] - before["callbacks_dropped"],
        "hints that reached generations": sum(v.callbacks_received for v in views),
        "provider reads per delivered task": round(reads / max(1, tasks), 2),
        "polls": sum(v.polls for v in views),
        **checked.counts,
    }
    _ops_counts(harness, checked)
    return Outcome(4, "callback chaos", checked, time.monotonic() - began)


POLL_PAST = 6.0  # callback delay: past the first poll (harness.POLL_INITIAL_SECONDS = 4 s)


def _callbacks_drained(harness: Harness) -> dict[str, Any]:
    """The simulator's stats once no callback has been sent for 10 s (delays, reordering and
    retries all spent)."""
    sim = harness.servers.sim
    last, quiet_since = sim.stats(), time.monotonic()
    while time.monotonic() - quiet_since < 10:
        time.sleep(1)  # sampling a counter that has no event to wait on
        now = sim.stats()
        if now["callbacks_sent"] != last["callbacks_sent"]:
            last, quiet_since = now, time.monotonic()
    return last


def _forged_tokens(workflow_id: str) -> list[str]:
    """A wrong MAC for the real generation, a well-formed token made with another secret, and
    one for a generation that does not exist."""
    other = hashlib.sha256(b"not our secret" + workflow_id.encode()).hexdigest()[:32]
    return [f"{workflow_id}.{'0' * 32}", f"{workflow_id}.{other}", f"gen-demo-none.{other}"]


# ---- 5. provider chaos ---------------------------------------------------------------------------


async def provider_chaos(harness: Harness, count: int) -> Outcome:
    """20 % 429/5xx on create and get, 10 % `#policy` prompts, 10 % transient task failures."""
    began = time.monotonic()
    sim = harness.servers.sim
    before = await asyncio.to_thread(sim.stats)
    await asyncio.to_thread(
        sim.set_config, create_error_rate=0.2, get_error_rate=0.2, transient_rate=0.1, retry_after_seconds=1
    )
    try:
        plan: list[tuple[str, Expect]] = [
            (
                f"Bad provider day {i}" + (" #policy" if i % 10 == 0 else ""),
                Expect.POLICY if i % 10 == 0 else Expect.DELIVERED,
            )
            for i in range(count)
        ]
        budget = RetryBudget(max_attempts=3)
        generations = []
        for text, expect in plan:
            generations.append(await harness.start(text, expect, budget=budget))
        views = await harness.settle(generations, within=500)
        after = await asyncio.to_thread(sim.stats)
    finally:
        await asyncio.to_thread(sim.reset_config)
    checked = await harness.check(generations, views)
    policy_tasks = [
        len(sim.tasks(g.prompt_sha256))
        for g, v in zip(generations, views, strict=True)
        if g.expect is Expect.POLICY
    ]
    if any(n != 1 for n in policy_tasks):
        checked.problems.append(f"policy generations' task counts {policy_tasks}: each must be exactly one")
    successes = [v for v in views if v.outputs]
    over_budget = [v.id for v in views if v.attempts > budget.max_attempts]
    checked.problems += [f"{wid}: more attempts than the budget" for wid in over_budget]
    checked.counts = {
        "delivered": f"{len(successes)}/{sum(1 for g in generations if g.expect is Expect.DELIVERED)}",
        "policy after one task": f"{sum(1 for n in policy_tasks if n == 1)}/{len(policy_tasks)}",
        "attempts per success": round(sum(v.attempts for v in successes) / max(1, len(successes)), 2),
        "faults injected": after["http_faults_injected"] - before["http_faults_injected"],
        **(await harness.history_counts(generations)),
        **checked.counts,
    }
    _ops_counts(harness, checked)
    return Outcome(5, "provider chaos", checked, time.monotonic() - began)


# ---- 6. expired link -----------------------------------------------------------------------------


async def expired_link(harness: Harness, count: int) -> Outcome:
    """Results whose link expires before the re-host: found by a late poll after expiry, or
    expiring mid-copy (the copy is cut, and the retry finds the link gone). Run last: it moves
    the simulator's clock 25 h."""
    began = time.monotonic()
    sim = harness.servers.sim
    # No callback, and a first poll long after the task ends: the clock moves in between.
    slow_poll = {"poll_initial_seconds": 30.0, "poll_max_seconds": 30.0}
    late = [
        await harness.start(f"Found too late {i} #nocallback", Expect.EXPIRED, tuning=slow_poll)
        for i in range(count)
    ]
    midway = [
        await harness.start(f"Expires mid copy {i} #size={16 * MIB} #rate=2m #cut={3 * MIB}", Expect.EXPIRED)
        for i in range(count)
    ]
    # The late ones' tasks end before their first poll; the others are copying: then 25 h pass.
    for started in late:
        await asyncio.to_thread(_wait_task_end, harness, started)
    await _until_rehosting(harness, midway)
    await asyncio.to_thread(sim.advance_clock, 25 * 3600)
    generations = [*late, *midway]
    views, checked = await _run_with(harness, generations, within=300)
    checked.counts = {
        "expired": f"{sum(1 for v in views if v.failure_category and v.failure_category.value == 'expired')}/{len(generations)}",
        "delivered (must be 0)": _delivered(views),
        "message": repr((views[0].failure_message or "")[:110]),
        **checked.counts,
    }
    _ops_counts(harness, checked)
    return Outcome(6, "expired link", checked, time.monotonic() - began)


def _wait_task_end(harness: Harness, started: Started) -> None:
    sim = harness.servers.sim
    for _ in range(100):
        tasks = sim.tasks(started.prompt_sha256)
        if tasks:
            sim.wait(task_id=tasks[0]["id"], within=60)
            return
        time.sleep(0.2)  # the create has not reached the simulator yet
    raise TimeoutError(f"no task for {started.id}")


async def _until_rehosting(harness: Harness, generations: list[Started]) -> None:
    for started in generations:
        for _ in range(300):
            view = await harness.view(started)
            if view.status.value == "rehosting" or view.is_terminal:
                break
            await asyncio.sleep(0.2)  # probing the view: no event to await from outside


# ---- 7. API restarts -----------------------------------------------------------------------------


async def api_restarts(harness: Harness, count: int) -> Outcome:
    """The API restarted every ~8 s while the generations' callbacks arrive: the provider's
    retries (1/2/4 s) and polling must deliver everything."""
    began = time.monotonic()
    generations = await harness.start_paced(
        # Ending over about a minute (2 to 60 s at the run's time scale), across several restarts.
        [(f"API bounce {i} #gen={40 + 40 * (i % 30)}", Expect.DELIVERED) for i in range(count)],
        per_second=5,
    )
    done = asyncio.Event()
    restarts = 0

    async def bouncer() -> None:
        nonlocal restarts
        while not done.is_set():
            await asyncio.sleep(harness.rng.uniform(6.0, 10.0))  # the fault's rhythm
            await asyncio.to_thread(harness.servers.stop_api)
            harness.servers.start_api()
            await asyncio.to_thread(harness.servers.wait_api)
            restarts += 1

    bouncing = asyncio.create_task(bouncer())
    try:
        views = await harness.settle(generations, within=400)
    finally:
        done.set()
        await bouncing
    checked = await harness.check(generations, views)
    by_poll = [v for v in views if v.outputs and v.callbacks_received == 0]
    share = len(by_poll) / max(1, _delivered(views))
    checked.counts = {
        "delivered": f"{_delivered(views)}/{count}",
        "API restarts": restarts,
        "poll-finalised share": f"{share:.0%} ({len(by_poll)} with callbacks_received 0 and polls > 0: "
        + ("the issue-9 signal fires)" if by_poll else "no alert)"),
        **checked.counts,
    }
    _ops_counts(harness, checked)
    return Outcome(7, "API restarts while callbacks arrive", checked, time.monotonic() - began)


# ---- shared ---------------------------------------------------------------------------------------


def _delivered(views: list[GenerationView]) -> int:
    return sum(1 for v in views if v.outputs and v.status.value == "delivered")


def _ops_counts(harness: Harness, checked: Checked) -> None:
    if harness.ops_resolved:
        checked.counts["ops resolved"] = dict(harness.ops_resolved)
        harness.ops_resolved.clear()


SCENARIOS: dict[int, tuple[Scenario, int]] = {
    1: (worker_sigkill, 100),
    2: (store_down, 20),
    3: (temporal_restart, 30),
    4: (callback_chaos, 30),
    5: (provider_chaos, 60),
    7: (api_restarts, 30),
    6: (expired_link, 2),  # last: it moves the simulator's clock
}
