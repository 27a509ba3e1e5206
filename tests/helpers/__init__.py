"""Helpers shared by the tests (after temporalio/sdk-python's `tests/helpers`).

`assert_eventually` is the one way a test waits for state it cannot await: a query of a running
workflow, Temporal visibility, a provider task moving on. Everything else is awaited directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def assert_eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float = 10.0,
    every: float = 0.02,
    what: str = "the condition",
) -> T:
    """Awaits `probe()` until it returns something truthy, and returns that.

    `probe` says "not yet" by returning something falsy or by raising `AssertionError` (whose
    message then explains the wait in the failure). Any other exception ends the wait at once:
    use `pytest.fail` for a state the condition can no longer reach. After `within` seconds the
    test fails naming `what`, the time waited and the last answer."""
    started = time.monotonic()
    last = "never answered"
    while True:
        try:
            result = await probe()
        except AssertionError as err:
            last = f"last: {err}" if str(err) else "last: an AssertionError"
        else:
            if result:
                return result
            last = f"last answer: {result!r}"
        waited = time.monotonic() - started
        if waited >= within:
            raise AssertionError(f"{what} did not hold within {within:g} s ({last})")
        await asyncio.sleep(min(every, within - waited))
