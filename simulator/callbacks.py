"""Callback delivery as the contract describes it, plus the faults a real one shows.

Contract: terminal states only, body = the task object, HTTPS only, the receiver answers 2xx
within 10 s, otherwise at most 3 retries after 1, 2 and 4 s; duplicates, reordering and no
delivery at all are possible. Waits here are the simulated behaviour itself (backoff, hold
windows, injected delay), not synchronisation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from gptimage2 import is_private_host

from .config import FaultConfig
from .state import Counters, SimTask

logger = logging.getLogger("simulator.callbacks")

RETRY_DELAYS = (1.0, 2.0, 4.0)  # contract: "at most 3 times, after 1, 2 and 4 s"
DUPLICATE_DELAY = 0.5  # seconds (x callback_backoff_scale) between a delivery and its duplicate


@dataclass
class _Pending:
    task: SimTask
    url: str
    body: bytes
    stale_body: bytes
    copies: int


async def resolves_to_private(host: str) -> bool:
    """True if `host` is, or resolves to, a private/loopback/link-local address.

    An unresolvable name is not provably private: the request simply fails later."""
    if is_private_host(host):
        return True
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(3.0):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return False
    return any(is_private_host(str(info[4][0])) for info in infos)


class CallbackDispatcher:
    def __init__(
        self,
        counters: Counters,
        faults: Callable[[], FaultConfig],
        rng: random.Random,
        verify: ssl.SSLContext | bool,
        allow_private: bool,
        on_change: Callable[[], None],
    ) -> None:
        self._counters = counters
        self._on_change = on_change
        self._faults = faults
        self._rng = rng
        self._verify = verify
        self._allow_private = allow_private
        self._http: httpx.AsyncClient | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._held: list[_Pending] = []
        self._flushing = False

    async def start(self) -> None:
        self._http = httpx.AsyncClient(
            verify=self._verify,
            follow_redirects=False,  # a redirect to an internal host would bypass the host check
            # A busy sender reuses its connections, as webhook systems at volume do, but lets
            # them go after a second idle so a stopping receiver is not kept waiting for them.
            limits=httpx.Limits(keepalive_expiry=1.0),
            headers={"User-Agent": "gptimage2-simulator", "Content-Type": "application/json"},
        )

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def submit(self, task: SimTask, body: bytes, stale_body: bytes) -> None:
        """Queue the terminal callback of `task` (called once, when billing is settled)."""
        url = task.params.callback_url
        if url is None:
            return
        faults = self._faults()
        if task.directives.no_callback or self._draw(faults.callback_drop_rate):
            self._counters.callbacks_dropped += 1
            task.notes.append("callback dropped")
            self._on_change()
            return
        duplicated = task.directives.dup_callback or self._draw(faults.callback_duplicate_rate)
        copies = faults.callback_duplicate_copies if duplicated else 1
        pending = _Pending(task, url, body, stale_body, copies)
        if faults.callback_reorder:
            self._held.append(pending)
            if not self._flushing:
                self._flushing = True
                self._spawn(self._flush_held(faults.callback_reorder_window_seconds))
        else:
            self._spawn(self._deliver_pending(pending, pending.body))

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _flush_held(self, window: float) -> None:
        await asyncio.sleep(window)  # the hold window is the fault being simulated
        batch, self._held, self._flushing = self._held, [], False
        batch.sort(key=lambda pending: pending.task.ended_at)
        if len(batch) == 1:
            # Nothing to reorder: send the fresh news, then stale news after it.
            order = [(batch[0], batch[0].body), (batch[0], batch[0].stale_body)]
        else:
            order = [(pending, pending.body) for pending in reversed(batch)]
        for pending, body in order:
            await self._deliver_pending(pending, body)

    async def _deliver_pending(self, pending: _Pending, body: bytes) -> None:
        faults = self._faults()
        if faults.callback_delay_seconds:
            await asyncio.sleep(faults.callback_delay_seconds)
        for copy in range(pending.copies):
            if copy:
                await asyncio.sleep(DUPLICATE_DELAY * self._faults().callback_backoff_scale)
            await self._deliver(pending.task, pending.url, body)

    async def _deliver(self, task: SimTask, url: str, body: bytes) -> None:
        """One delivery: the first attempt, then at most 3 retries; a 2xx ends it."""
        for attempt in range(1 + len(RETRY_DELAYS)):
            if attempt:
                self._counters.callbacks_retried += 1
                await asyncio.sleep(RETRY_DELAYS[attempt - 1] * self._faults().callback_backoff_scale)
            status = await self._attempt(url, body)
            task.callback_attempts += 1
            self._counters.callbacks_sent += 1
            # The URL carries the receiver's token: log the task and host, never the URL.
            logger.info(
                "callback task=%s host=%s attempt=%d -> %s",
                task.id,
                urlsplit(url).hostname,
                attempt + 1,
                status,
            )
            if isinstance(status, int) and 200 <= status < 300:
                self._counters.callbacks_delivered += 1
                task.callback_deliveries += 1
                self._on_change()
                return
            self._counters.callbacks_failed += 1
            self._on_change()
            if status == "refused":
                break
        self._counters.callbacks_given_up += 1
        self._on_change()

    async def _attempt(self, url: str, body: bytes) -> int | str:
        """The HTTP status, or why no answer came."""
        assert self._http is not None, "start() first"
        host = urlsplit(url).hostname or ""
        # Checked again at delivery: a public name may resolve to an internal address.
        if not self._allow_private and await resolves_to_private(host):
            return "refused"
        timeout = self._faults().callback_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                response = await self._http.post(url, content=body, timeout=timeout)
        except TimeoutError:
            return "timeout"
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return response.status_code
