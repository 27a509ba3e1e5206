"""Per-tenant token buckets: one noisy backend cannot starve the others or flood Temporal.

Kept in process memory, so the limit applies per API replica; a fleet-wide limit belongs in
the load balancer or a shared store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucketLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)

    def take(self, key: str) -> float | None:
        """None if a request may proceed now; else the seconds until one token is available."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after_header(wait: float) -> str:
        # Retry-After takes whole seconds; rounding up never invites an early retry.
        return str(max(1, math.ceil(wait)))
