"""The live progress stream on real servers: queued -> processing -> rehosting -> delivered for
a real generation, over SSE, resumed after a disconnect with Last-Event-ID (the resumed stream
goes on exactly after the last event seen: no repeat, no gap), tenant-scoped like every route."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from devstack.testbed import Testbed
from gptimage2 import VideoParams
from tests.helpers.flow import prompt
from workflows.control import start_generation
from workflows.models import GenerationSpec

Event = dict[str, Any]


async def read_events(
    http: httpx.AsyncClient,
    generation_id: str,
    *,
    last_event_id: str | None = None,
    stop_at: str | None = None,
) -> list[Event]:
    """The stream's events until it ends, or until one with status `stop_at` (then it hangs up)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[Event] = []
    current: Event = {}
    async with http.stream("GET", f"/v1/generations/{generation_id}/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue  # a keep-alive comment
            if line:
                name, _, value = line.partition(":")
                current[name] = value.strip()
                continue
            if "data" in current:
                event = {
                    "id": current.get("id"),
                    "event": current.get("event"),
                    **json.loads(current["data"]),
                }
                events.append(event)
                if event["status"] == stop_at:
                    return events
            current = {}
    return events


async def test_stream_shows_each_state_and_resumes_after_a_disconnect(
    stack: Testbed, hooks: httpx.AsyncClient
) -> None:
    started = await start_generation(
        stack.client,
        tenant="hooks",
        idempotency_key=uuid.uuid4().hex,
        # Two real seconds at the simulator's time scale: a poll (every second here) sees it
        # processing.
        spec=GenerationSpec(
            user_id="user-1", params=VideoParams(prompt=prompt("A kite over the dunes", "#gen=400"))
        ),
        task_queue=stack.task_queue,
        tuning={"poll_initial_seconds": 1.0, "poll_max_seconds": 1.0},
    )
    generation_id = started.view.id
    first = await read_events(hooks, generation_id, stop_at="processing")
    assert first[-1]["status"] == "processing"  # hung up here
    rest = await read_events(hooks, generation_id, last_event_id=first[-1]["id"])
    seen = first + rest
    assert [int(e["id"]) for e in seen] == list(range(1, len(seen) + 1))  # resumed: no repeat, no gap
    statuses = list(dict.fromkeys(e["status"] for e in seen))
    assert statuses == ["queued", "processing", "rehosting", "delivered"]
    assert [e["event"] for e in seen] == ["progress"] * (len(seen) - 1) + ["end"]
    assert seen[-1]["progress"] == 100
    assert any(e["eta_seconds"] for e in seen if e["status"] == "processing")

    # Resuming after the end: nothing is repeated but the end itself is not re-sent either; the
    # stream closes at once.
    assert await read_events(hooks, generation_id, last_event_id=seen[-1]["id"]) == []
    bad = await hooks.get(f"/v1/generations/{generation_id}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "Last-Event-ID"
    other = await hooks.get(f"/v1/generations/gen-gone-{'0' * 32}/events")
    assert other.status_code == 404
