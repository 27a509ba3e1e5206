"""When a generation should be ready: the recent p95 of its model, duration and quality.

The integration guide's advice for a p95 spike is to degrade gracefully: tell the user it is
still processing rather than leave a spinner that never moves. So a running generation's view
carries `expected_ready_at` (submission + that p95), and once it is past, the stage says
"taking longer than usual". The p95 comes from visibility (workflows.report, the same figure
as the ops page and `starter.py report`), read at most once per shape per
`API_EXPECTED_CACHE_SECONDS`; without enough recent deliveries of the shape there is no
expectation, and a Temporal hiccup while reading it never fails the GET.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from workflows import control
from workflows.models import GenerationStatus
from workflows.report import Shape, expected_latencies

from .config import ApiConfig
from .schemas import GenerationOut
from .temporal import TemporalGateway, TemporalUnavailable

TAKING_LONGER = "taking longer than usual"
# Working towards its result. A draft awaiting approval waits for a person; an approved draft's
# final is expected from its approval (`final_started_at`; none for runs from before the field).
_WORKING = frozenset({GenerationStatus.QUEUED, GenerationStatus.PROCESSING, GenerationStatus.REHOSTING})


def working_since(out: GenerationOut) -> datetime | None:
    """When the generation's current work started, if it is working towards a result."""
    if out.status not in _WORKING:
        return None
    return out.final_started_at if out.draft is not None else out.created_at


def shape_of_out(out: GenerationOut) -> Shape | None:
    if out.params is None:
        return None
    quality = out.params.quality
    return (out.params.model, out.params.duration, quality.value if quality else None)


def with_expectation(out: GenerationOut, p95_s: float | None, now: datetime) -> GenerationOut:
    """`out` with `expected_ready_at`, and the stage saying so once it is past."""
    since = working_since(out)
    if p95_s is None or since is None:
        return out
    expected = since + timedelta(seconds=p95_s)
    stage = f"{TAKING_LONGER}: {out.stage}" if now > expected else out.stage
    return out.model_copy(update={"expected_ready_at": expected, "stage": stage})


class ExpectedReady:
    def __init__(self, gateway: TemporalGateway, config: ApiConfig) -> None:
        self.gateway = gateway
        self.config = config
        self._p95: dict[Shape, tuple[float, float | None]] = {}  # shape -> (read at, p95 s)
        self._lock = asyncio.Lock()

    async def apply(self, out: GenerationOut) -> GenerationOut:
        shape = shape_of_out(out)
        if shape is None or working_since(out) is None:
            return out
        return with_expectation(out, await self.p95(shape), datetime.now(UTC))

    async def p95(self, shape: Shape) -> float | None:
        cached = self._p95.get(shape)
        if cached is not None and time.monotonic() - cached[0] < self.config.expected_cache_seconds:
            return cached[1]
        async with self._lock:  # one read per shape at a time, however many GETs wait for it
            cached = self._p95.get(shape)
            if cached is not None and time.monotonic() - cached[0] < self.config.expected_cache_seconds:
                return cached[1]
            since = datetime.now(UTC) - timedelta(hours=self.config.expected_window_hours)

            async def read(client: Client) -> control.GenerationRows:
                return await control.recent_deliveries(
                    client, shape, since=since, limit=self.config.ops_visibility_limit
                )

            try:
                found = await self.gateway.call(read)
            except TemporalUnavailable:
                return cached[1] if cached else None
            p95 = expected_latencies(found.rows, min_samples=self.config.expected_min_samples).get(shape)
            self._p95[shape] = (time.monotonic(), p95)
            return p95
