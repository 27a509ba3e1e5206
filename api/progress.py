"""The live progress stream's source: one poller per watched generation and API process,
whatever the number of listeners.

How changes are learned: the `progress_events(after)` query, every POLL_SECONDS, while anyone
listens. A query adds nothing to history (an update that waits for a change would add events
per listener and change); one poller per generation makes the cost per watched generation,
not per listener: N browser tabs on one generation cost one query per interval. Each event
carries the workflow's sequence number, so a listener that resumes (`Last-Event-ID`) gets
exactly the events after the one it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from temporalio.client import Client, WorkflowExecutionStatus

from workflows import control
from workflows.generation import VideoGenerationWorkflow
from workflows.progress import ProgressEvent

from .temporal import TemporalGateway

POLL_SECONDS = 0.25
# How often a feed with no news checks that its workflow is still running (one that was
# terminated by an operator never reports a terminal event of its own).
LIVENESS_SECONDS = 5.0


class _Feed:
    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []
        self.listeners = 0
        self.error: BaseException | None = None
        self.changed = asyncio.Condition()
        self.poller: asyncio.Task[None] | None = None

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0

    @property
    def ended(self) -> bool:
        return bool(self.events) and self.events[-1].is_terminal


class ProgressHub:
    def __init__(self, gateway: TemporalGateway, poll_seconds: float = POLL_SECONDS) -> None:
        self.gateway = gateway
        self.poll_seconds = poll_seconds
        self._feeds: dict[str, _Feed] = {}

    async def events(self, generation_id: str, after: int) -> AsyncIterator[ProgressEvent]:
        """The generation's events after `after`, as they happen, ending with its terminal one."""
        feed = self._feeds.get(generation_id)
        if feed is None:
            feed = self._feeds[generation_id] = _Feed()
            feed.poller = asyncio.create_task(self._poll(generation_id, feed))
        feed.listeners += 1
        seen = after
        try:
            while True:
                for event in [e for e in feed.events if e.seq > seen]:
                    seen = event.seq
                    yield event
                if feed.ended:
                    return
                if feed.error is not None:
                    raise feed.error
                await self._wait_past(feed, seen)
        finally:
            feed.listeners -= 1
            if feed.listeners == 0 and self._feeds.get(generation_id) is feed:
                del self._feeds[generation_id]
                if feed.poller is not None:
                    feed.poller.cancel()

    @staticmethod
    async def _wait_past(feed: _Feed, seen: int) -> None:
        async with feed.changed:
            await feed.changed.wait_for(lambda: feed.last_seq > seen or feed.ended or feed.error is not None)

    async def _poll(self, generation_id: str, feed: _Feed) -> None:
        checked = time.monotonic()
        try:
            while not feed.ended:
                new = await self.gateway.call(lambda client: self._read(client, generation_id, feed.last_seq))
                if not new and time.monotonic() - checked > LIVENESS_SECONDS:
                    checked = time.monotonic()
                    new = await self.gateway.call(
                        lambda client: self._closed_abnormally(client, generation_id, feed)
                    )
                if new:
                    async with feed.changed:
                        feed.events.extend(new)
                        feed.changed.notify_all()
                if not feed.ended:
                    await asyncio.sleep(self.poll_seconds)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Temporal gone, the generation gone: every listener hears it
            async with feed.changed:
                feed.error = exc
                feed.changed.notify_all()

    @staticmethod
    async def _read(client: Client, generation_id: str, after: int) -> list[ProgressEvent]:
        handle = client.get_workflow_handle_for(VideoGenerationWorkflow.run, generation_id)
        return await handle.query(VideoGenerationWorkflow.progress_events, after)

    @staticmethod
    async def _closed_abnormally(client: Client, generation_id: str, feed: _Feed) -> list[ProgressEvent]:
        """A terminal event for a run that closed without one (terminated, timed out)."""
        description = await client.get_workflow_handle(generation_id).describe()
        if description.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED):
            return []
        view = await control.describe_generation(client, generation_id)
        return [
            ProgressEvent(
                seq=feed.last_seq + 1,
                status=view.status,
                stage=view.stage,
                progress=view.progress,
                at=view.updated_at or description.close_time or description.start_time,
            )
        ]

    async def aclose(self) -> None:
        for feed in list(self._feeds.values()):
            if feed.poller is not None:
                feed.poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed.poller
        self._feeds.clear()
