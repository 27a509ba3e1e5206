"""The simulated provider: task creation, lazy lifecycle, settlement, cancel and the scheduler
that turns "a task reached its end" into billing and a callback.

Everything here runs on the server's event loop thread, so state needs no locks; the only work
off the loop is video encoding (`VideoCache`) and DNS resolution.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import random
import secrets
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Any

from gptimage2 import CreateVideoRequest, TaskStatus

from .callbacks import CallbackDispatcher
from .config import FaultConfig, SimulatorSettings
from .directives import parse_directives
from .state import POLICY_CODE, Counters, SimClock, SimTask, Timeline, credits_for, number
from .video import VideoCache

logger = logging.getLogger("simulator")


class TaskConflict(Exception):
    """The task is past cancelling (already terminal)."""


class Simulator:
    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.faults: FaultConfig = settings.faults
        self.clock = SimClock(settings.time_scale)
        self.seed = settings.seed if settings.seed is not None else secrets.randbits(32)
        self.rng = random.Random(self.seed)
        self.counters = Counters()
        self.tasks: dict[str, SimTask] = {}
        self.videos = VideoCache(settings.cache_dir)
        self._due: list[tuple[float, str]] = []  # (end instant, task id) of unsettled tasks
        self._creates_by_prompt: Counter[str] = Counter()
        self._proxied_by_prompt: Counter[str] = Counter()
        self._changed = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self.outbound_tls: ssl.SSLContext = ssl.create_default_context(cafile=settings.callback_cafile)
        self.callbacks = CallbackDispatcher(
            self.counters,
            lambda: self.faults,
            self.rng,
            self.outbound_tls,
            settings.allow_private,
            self.touch,
        )

    # -- life ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.callbacks.start()
        self._scheduler = asyncio.get_running_loop().create_task(self._run_scheduler())
        logger.info(
            "simulator ready: time scale %s, seed %s, video cache %s",
            self.settings.time_scale,
            self.seed,
            self.settings.cache_dir,
        )

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        await self.callbacks.stop()
        self.videos.close()

    # -- change notification ----------------------------------------------------------------
    def touch(self) -> None:
        """Wakes the scheduler and every `wait_until` caller: something changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        """Waits for `predicate` to hold, re-checking on every change; False at the deadline."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self.settle_due()
                    if predicate():
                        return True
                    changed = self._changed
                    next_due = self._next_due()
                    if next_due is None:
                        await changed.wait()
                    else:
                        # A task may end by the clock alone; wake for it too.
                        delay = self.clock.real_seconds_until(next_due) + 0.001
                        try:
                            async with asyncio.timeout(delay):
                                await changed.wait()
                        except TimeoutError:
                            pass
        except TimeoutError:
            return False

    # -- tasks -------------------------------------------------------------------------------
    def draw(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def proxy_fails(self, params: CreateVideoRequest) -> bool:
        """`#proxy-502`: the first create with this prompt dies in a proxy in front of the
        gateway (a bare 502), before any task is made."""
        if not parse_directives(params.prompt, self.faults.policy_keyword).proxy_502:
            return False
        self._proxied_by_prompt[params.prompt] += 1
        return self._proxied_by_prompt[params.prompt] == 1

    def create_task(
        self, params: CreateVideoRequest, results_base: str, wire: dict[str, Any] | None = None
    ) -> tuple[SimTask, bool]:
        """Creates a task; also says whether its create response must be lost (a fault)."""
        faults = self.faults
        directives = parse_directives(params.prompt, faults.policy_keyword)
        self._creates_by_prompt[params.prompt] += 1
        nth = self._creates_by_prompt[params.prompt]

        error_code: str | None = None
        if directives.fail_code and (directives.fail_first is None or nth <= directives.fail_first):
            error_code = directives.fail_code
        elif directives.policy or self.draw(faults.policy_rate):
            error_code = POLICY_CODE
        elif self.draw(faults.transient_rate):
            error_code = self.rng.choice(faults.transient_codes)

        fixed = (
            directives.gen_seconds if directives.gen_seconds is not None else faults.generation_time_seconds
        )
        now = self.clock.now()
        timeline = Timeline.draw(params, now, self.rng, fixed, error_code)
        task = SimTask(
            id=self._new_id(now),
            params=params,
            prompt_sha256=hashlib.sha256(params.prompt.encode()).hexdigest(),
            directives=directives,
            timeline=timeline,
            credits_reserved=credits_for(params) if directives.reserve is None else directives.reserve,
            results_base=results_base,
            wire=dict(wire or {}),
        )
        self.tasks[task.id] = task
        heapq.heappush(self._due, (task.ended_at, task.id))
        self.counters.tasks_created += 1
        self.counters.credits_reserved += task.credits_reserved
        lose = (directives.lost_response and nth == 1) or self.draw(faults.create_response_lost_rate)
        logger.info(
            "created %s (prompt sha256 %s…)%s", task.id, task.prompt_sha256[:12], " [response lost]" * lose
        )
        self.touch()
        return task, lose

    def _new_id(self, now: float) -> str:
        # The contract's shape: task-unified-<unix seconds>-<8 hex>.
        while True:
            task_id = f"task-unified-{int(now)}-{secrets.token_hex(4)}"
            if task_id not in self.tasks:
                return task_id

    def get(self, task_id: str) -> SimTask | None:
        self.settle_due()
        return self.tasks.get(task_id)

    def forget(self, task_id: str) -> bool:
        """The task is gone, as after a provider purge or restart: every later call about it
        answers 404, its result link too, and it never calls back. False if it was unknown."""
        task = self.tasks.pop(task_id, None)
        if task is None:
            return False
        logger.info("forgot %s", task_id)
        self.touch()
        return True

    def refuse(self, task_id: str, status: int) -> SimTask | None:
        """Later API calls about the task answer `status` (the key was revoked, the account
        changed). None if the task is unknown."""
        task = self.tasks.get(task_id)
        if task is not None:
            task.refused_status = status
            logger.info("refusing calls about %s with %d", task_id, status)
            self.touch()
        return task

    def cancel(self, task_id: str) -> SimTask | None:
        """pending/processing -> cancelled (credits refunded, callback sent); None if unknown."""
        self.settle_due()
        task = self.tasks.get(task_id)
        if task is None:
            return None
        now = self.clock.now()
        if task.is_terminal_at(now):
            raise TaskConflict(f"task is already {task.status_at(now)[0].value}")
        task.cancelled_at = now
        self.counters.cancels += 1
        self._settle(task)
        return task

    # -- settlement --------------------------------------------------------------------------
    def _next_due(self) -> float | None:
        while self._due and self._pending(self._due[0][1]) is None:
            heapq.heappop(self._due)
        return self._due[0][0] if self._due else None

    def _pending(self, task_id: str) -> SimTask | None:
        """The task if it still has to settle (not settled, not forgotten)."""
        task = self.tasks.get(task_id)
        return None if task is None or task.settled else task

    def settle_due(self) -> None:
        """Settles every task whose end the clock has passed (idempotent, cheap when idle)."""
        now = self.clock.now()
        while self._due and self._due[0][0] <= now:
            _, task_id = heapq.heappop(self._due)
            task = self._pending(task_id)
            if task is not None:
                self._settle(task)

    def _settle(self, task: SimTask) -> None:
        """Billing first, then the callback: "sent ... after billing is settled" (contract)."""
        task.settled = True
        status, _ = task.status_at(task.ended_at)
        if status is TaskStatus.COMPLETED:
            self.counters.credits_charged += task.credits_reserved
        else:
            self.counters.credits_refunded += task.credits_reserved
        body = json.dumps(task.snapshot(task.ended_at)).encode()
        stale = json.dumps(task.stale_snapshot()).encode()
        self.callbacks.submit(task, body, stale)
        self.touch()

    async def _run_scheduler(self) -> None:
        """Settles tasks as the clock reaches their end, so callbacks go out unprompted."""
        while True:
            changed = self._changed
            try:
                self.settle_due()
            except Exception:  # one bad task must not stop every later callback
                logger.exception("settling tasks failed")
            next_due = self._next_due()
            timeout = None if next_due is None else self.clock.real_seconds_until(next_due) + 0.001
            try:
                async with asyncio.timeout(timeout):
                    await changed.wait()
            except TimeoutError:
                pass

    def advance_clock(self, seconds: float) -> float:
        self.clock.advance(seconds)
        self.settle_due()
        self.touch()
        return self.clock.now()

    def set_faults(self, faults: FaultConfig) -> None:
        self.faults = faults
        self.touch()

    # -- inspection --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        self.settle_due()
        now = self.clock.now()
        by_status: Counter[str] = Counter(task.status_at(now)[0].value for task in self.tasks.values())
        return {**self.counters.as_dict(), "tasks_by_status": dict(by_status), "sim_time": now}

    def task_list(self) -> list[dict[str, Any]]:
        self.settle_due()
        now = self.clock.now()
        out = []
        for task in self.tasks.values():
            status, progress = task.status_at(now)
            out.append(
                {
                    "id": task.id,
                    "prompt_sha256": task.prompt_sha256,
                    "model": task.params.model,
                    "status": status.value,
                    "progress": progress,
                    "created": int(task.timeline.created),
                    "callback_url": task.params.callback_url,
                    "wire": task.wire,
                    "results": len(task.result_names()),
                    "callback_attempts": task.callback_attempts,
                    "callback_deliveries": task.callback_deliveries,
                    "bytes_served": task.bytes_served,
                    "credits_reserved": number(task.credits_reserved),
                    "notes": task.notes,
                }
            )
        return out
