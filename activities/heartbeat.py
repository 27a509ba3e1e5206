"""A heartbeat on a timer for long synchronous activities, as PostHog's heartbeater does.

Heartbeating only when work advances ties liveness to speed: a copy from a host slower than
(bytes between beats) / (heartbeat timeout) is declared dead while it is making progress, and
starts again. A `Heartbeater` beats from a thread of its own every `every` seconds with whatever
`details()` says at that moment, so a slow copy stays alive and a dead worker (no thread left
to beat) is still noticed within the heartbeat timeout.

Example::

    with Heartbeater(lambda: {"bytes_done": copy.bytes_done}, every=heartbeat_interval()):
        copy.run()
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from temporalio import activity

logger = logging.getLogger(__name__)

# How many beats per heartbeat timeout: the SDK sends at most one per 0.8 x timeout anyway, so
# more only keeps the details it sends fresher.
BEATS_PER_TIMEOUT = 4


def heartbeat_interval(longest: float) -> float:
    """Seconds between beats for the current activity: `longest`, or less when its heartbeat
    timeout is short."""
    timeout = activity.info().heartbeat_timeout
    if timeout is None:
        return longest
    return max(0.05, min(longest, timeout.total_seconds() / BEATS_PER_TIMEOUT))


class Heartbeater:
    def __init__(self, details: Callable[[], Any], *, every: float) -> None:
        self._details = details
        self._every = every
        self._stop = threading.Event()
        # activity.heartbeat finds its activity through a context variable: the thread runs in
        # a copy of the activity's context.
        self._context = contextvars.copy_context()
        self._thread = threading.Thread(target=self._run, name="activity-heartbeat", daemon=True)

    def beat(self) -> None:
        """One heartbeat now, with the current details (e.g. just before failing, so the next
        attempt starts from the latest progress). Call it from the activity's own thread."""
        activity.heartbeat(self._details())

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._context.run(activity.heartbeat, self._details())
            except Exception:  # the activity is ending (its worker is gone): nothing to tell
                logger.debug("heartbeat not sent", exc_info=True)

    def __enter__(self) -> Heartbeater:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
