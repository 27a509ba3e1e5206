"""The API's one Temporal client: connected lazily, every call bounded in time.

The app must start (and answer /healthz) while Temporal is down, and a request must get a
503 quickly rather than hang on a cluster that is not there: clients retry a 503, and the
provider does too (docs/provider-contract.md: callbacks are retried after 1, 2 and 4 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from settings import Settings
from temporal_client import connect

from .config import ApiConfig
from .metrics import ApiMetrics

log = logging.getLogger("api.temporal")
T = TypeVar("T")

# Failures that say "the cluster is not answering now", as opposed to "your request is wrong".
_UNAVAILABLE_STATUSES = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.UNKNOWN,
    }
)
# After a failed connect, requests fail fast for this long instead of each waiting out a timeout.
_RECONNECT_PAUSE_SECONDS = 1.0


class TemporalUnavailable(Exception):
    """Temporal did not answer in time; the caller should answer 503."""


def is_unavailable(exc: RPCError) -> bool:
    return exc.status in _UNAVAILABLE_STATUSES


class TemporalGateway:
    def __init__(
        self, settings: Settings, config: ApiConfig, metrics: ApiMetrics, client: Client | None = None
    ) -> None:
        self._settings = settings
        self._config = config
        self._metrics = metrics
        self._client = client
        self._lock = asyncio.Lock()
        self._retry_at = 0.0

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is not None:
                return self._client
            if time.monotonic() < self._retry_at:
                raise TemporalUnavailable("Temporal is unreachable")
            try:
                self._client = await asyncio.wait_for(
                    connect(self._settings), timeout=self._config.temporal_connect_timeout_seconds
                )
            except (TimeoutError, RuntimeError, RPCError, OSError) as exc:
                self._retry_at = time.monotonic() + _RECONNECT_PAUSE_SECONDS
                log.warning("Temporal at %s unreachable: %s", self._settings.temporal_address, exc)
                raise TemporalUnavailable("Temporal is unreachable") from exc
            log.info("connected to Temporal at %s", self._settings.temporal_address)
            return self._client

    async def call(self, operation: Callable[[Client], Awaitable[T]]) -> T:
        """Runs `operation` with the client, turning "Temporal is not answering" into
        TemporalUnavailable; every other error passes through unchanged."""
        client = await self.client()
        self._metrics.temporal_calls.inc()
        try:
            return await asyncio.wait_for(
                operation(client), timeout=self._config.temporal_call_timeout_seconds
            )
        except TimeoutError as exc:
            raise TemporalUnavailable("Temporal did not answer in time") from exc
        except RPCError as exc:
            if is_unavailable(exc):
                raise TemporalUnavailable(f"Temporal is unavailable ({exc.status.name})") from exc
            raise

    async def ready(self) -> bool:
        """A cheap round trip to the frontend, bounded by the readiness timeout."""
        try:
            client = await self.client()
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=self._config.readiness_timeout_seconds)
            )
        except (TemporalUnavailable, RPCError, TimeoutError) as exc:
            log.info("not ready: %s", exc)
            return False
        return True
