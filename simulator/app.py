"""The simulator's HTTP surface.

- `/v1/...`: the provider contract (Bearer auth, error envelope, task objects).
- `/results/{task_id}/0.mp4`: result links, unauthenticated like CDN links, 403 after 24 h.
- `/_sim/...`: the test and chaos control surface. It has NO authentication on purpose (tests
  drive it without the provider key), so the simulator must only listen on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gptimage2 import TaskStatus

from .config import FaultConfig, SimulatorSettings
from .core import Simulator, TaskConflict
from .images import sample_image
from .state import SimTask, number
from .validation import ApiError, check_network_rules, invalid, validate_fields
from .video import CHUNK, ServedBody, VideoSpec

logger = logging.getLogger("simulator")

MAX_BODY_BYTES = 1024 * 1024  # larger create bodies get 413 request_too_large_error
_RAW_SEND = "simulator.raw_send"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


# -- plumbing ----------------------------------------------------------------------------------
def _sim(request: Request) -> Simulator:
    return cast(Simulator, request.app.state.sim)


def _http(request: Request) -> httpx.AsyncClient:
    return cast(httpx.AsyncClient, request.app.state.http)


def _authenticate(request: Request, sim: Simulator) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing Bearer token", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.strip().encode(), sim.settings.api_key.encode()):
        raise ApiError(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "request body is larger than 1 MiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:  # chunked uploads have no Content-Length to trust
            raise ApiError(413, "request body is larger than 1 MiB")
    return bytes(body)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise invalid(None, "request body is not valid JSON") from None


async def _json_object(request: Request) -> dict[str, Any]:
    body = _json(await _read_body(request))
    if not isinstance(body, dict):
        raise invalid(None, "request body must be a JSON object")
    return body


def _injected(status: int, sim: Simulator) -> ApiError:
    sim.counters.http_faults_injected += 1
    messages = {
        429: "Rate limit exceeded (simulated).",
        500: "Internal server error (simulated).",
        502: "Upstream error (simulated).",
        503: "Service temporarily unavailable (simulated).",
    }
    headers = {"Retry-After": str(sim.faults.retry_after_seconds)} if status == 429 else None
    return ApiError(status, messages[status], headers=headers)


def _bare_proxy_error(status: int, sim: Simulator) -> Response:
    """A 5xx as a reverse proxy answers it: an HTML page, not the gateway's error envelope."""
    sim.counters.http_faults_injected += 1
    reason = {500: "Internal Server Error", 502: "Bad Gateway"}.get(status, "Error")
    page = (
        f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
    )
    return Response(page, status_code=status, media_type="text/html")


async def _cut_connection(scope: Scope, receive: Receive, *, abort: bool) -> bool:
    """Closes the client connection under the server's feet, then waits until the server has
    noticed (so it neither answers nor logs an incomplete response). False if the server does
    not expose its transport (not uvicorn)."""
    raw_send = scope.get(_RAW_SEND)
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    if transport is None:
        return False
    if abort:
        transport.abort()
    else:
        transport.close()  # flushes what was already written, then FIN
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            while (await receive())["type"] != "http.disconnect":
                pass
    return True


def _client_gone(scope: Scope) -> bool:
    """Whether the client's connection is closed (False when the server does not say)."""
    cycle = getattr(scope.get(_RAW_SEND), "__self__", None)
    transport = getattr(cycle, "transport", None)
    return bool(getattr(cycle, "disconnected", False)) or bool(
        transport is not None and transport.is_closing()
    )


class _CaptureRawSend:
    """Outermost ASGI layer: keeps the server's own `send` in the scope, which is how a handler
    reaches the connection to simulate a lost response or a truncated download."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_RAW_SEND] = send
        await self.app(scope, receive, send)


class _LostResponse(Response):
    """The task exists, but the client never hears of it (contract: "Create is not idempotent")."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await _cut_connection(scope, receive, abort=True):
            return
        # Fallback for servers that hide the transport: promise a body and send none of it.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})


class _ResultStream(Response):
    """A result body streamed from memory (clip) and a reused zero buffer (padding), with
    optional throttling and a cut at byte `cut_at` of the body (Content-Length stays the full
    length)."""

    def __init__(
        self,
        body: ServedBody,
        start: int,
        end: int,
        status_code: int,
        headers: dict[str, str],
        *,
        rate: int,
        cut_at: int | None,
        head_only: bool,
        on_sent: Callable[[int], None],
    ) -> None:
        super().__init__(status_code=status_code, headers=headers, media_type="video/mp4")
        self._served, self._start, self._end = body, start, end
        self._rate, self._cut_at, self._head_only = rate, cut_at, head_only
        self._on_sent = on_sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self._head_only:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        end = min(self._end, self._cut_at) if self._cut_at is not None else self._end
        piece_size = CHUNK if not self._rate else max(1024, min(CHUNK, self._rate // 10))
        began, sent = time.monotonic(), 0
        async for piece in self._served.chunks(self._start, end, piece_size):
            if _client_gone(scope):
                # uvicorn drops writes to a closed connection silently: stop, or the rest of
                # the body would be counted as served to nobody.
                return
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            sent += len(piece)
            self._on_sent(len(piece))
            if self._rate:
                # Pacing is the simulated behaviour (a slow CDN), not synchronisation.
                ahead = sent / self._rate - (time.monotonic() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        if self._cut_at is not None:
            await _cut_connection(scope, receive, abort=False)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _cdn_error(status: int, code: str, message: str) -> Response:
    # Result links answer like an object store / CDN, not like the API.
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return Response(body, status_code=status, media_type="application/xml")


def _byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """[start, end) for a single `bytes=` range; None = serve everything; ValueError = 416."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # multiple or malformed ranges: ignoring Range is allowed (RFC 9110)
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        start, end = max(0, total - int(last)), total
    else:
        start = int(first)
        end = min(total, int(last) + 1) if last else total
    if start >= total or start >= end:
        raise ValueError("unsatisfiable range")
    return start, end


# -- provider contract ---------------------------------------------------------------------------
async def create_generation(request: Request) -> Response:
    sim = _sim(request)
    try:
        _authenticate(request, sim)
        fault = (
            sim.rng.choice(sim.faults.create_error_statuses)
            if sim.draw(sim.faults.create_error_rate)
            else None
        )
        if fault in (429, 503):
            # Rate limiting and overload are answered before any processing: no task exists.
            raise _injected(fault, sim)
        wire = _json(await _read_body(request))
        params = validate_fields(wire)
        await check_network_rules(params, _http(request), sim.settings.allow_private)
    except ApiError:
        sim.counters.creates_rejected += 1
        sim.touch()
        raise
    if sim.proxy_fails(params):
        sim.counters.creates_rejected += 1
        return _bare_proxy_error(502, sim)
    results_base = sim.settings.public_base_url or f"{request.url.scheme}://{request.url.netloc}"
    if fault is not None:
        # A 500/502 may come after the task was created upstream: the ambiguous create. The
        # gateway never answers its own error envelope for a task it made, so that answer comes
        # bare, as from a proxy in front of it; an enveloped 500/502 created nothing.
        if sim.draw(sim.faults.create_error_creates_task):
            sim.create_task(params, results_base.rstrip("/"))
            return _bare_proxy_error(fault, sim)
        sim.counters.creates_rejected += 1
        raise _injected(fault, sim)
    task, lose = sim.create_task(params, results_base.rstrip("/"), wire)
    if task.directives.slow_answer:
        # A slow answer is the simulated behaviour (the task exists meanwhile), not synchronisation.
        await asyncio.sleep(task.directives.slow_answer)
    if lose:
        sim.counters.responses_lost += 1
        return _LostResponse()
    return JSONResponse(task.snapshot(sim.clock.now()))


def _get_fault(sim: Simulator) -> None:
    if sim.draw(sim.faults.get_error_rate):
        raise _injected(sim.rng.choice(sim.faults.get_error_statuses), sim)


REFUSALS = {
    401: "invalid API key",
    403: "this API key may not access the task",
}


def _task_or_404(sim: Simulator, task: SimTask | None) -> SimTask:
    if task is None:
        raise ApiError(404, "task not found", param="task_id")
    if task.refused_status is not None:
        raise ApiError(task.refused_status, REFUSALS[task.refused_status])
    return task


async def get_task(request: Request) -> Response:
    sim = _sim(request)
    _authenticate(request, sim)
    _get_fault(sim)
    task = _task_or_404(sim, sim.get(request.path_params["task_id"]))
    sim.counters.gets_served += 1
    return JSONResponse(task.snapshot(sim.clock.now()))


async def cancel_task(request: Request) -> Response:
    sim = _sim(request)
    _authenticate(request, sim)
    try:
        task = _task_or_404(sim, sim.cancel(request.path_params["task_id"]))
    except TaskConflict as exc:
        raise ApiError(409, f"task cannot be cancelled: {exc}", param="task_id") from None
    return JSONResponse(task.snapshot(sim.clock.now()))


async def get_credits(request: Request) -> Response:
    """`GET /v1/credits`, the gateway's account API: the key's used credits are what completed
    tasks were charged; what running tasks hold is not used yet. `user` mirrors `token` (one key
    per simulated account)."""
    sim = _sim(request)
    _authenticate(request, sim)
    sim.settle_due()
    used = sim.counters.credits_charged
    held = sim.counters.credits_reserved - used - sim.counters.credits_refunded
    remaining = max(0.0, sim.settings.credit_allowance - used - held)
    balance = {"remaining_credits": number(remaining), "used_credits": number(used)}
    return JSONResponse(
        {
            "data": {"token": {**balance, "unlimited_credits": False}, "user": balance},
            "message": "",
            "success": True,
        }
    )


async def download_result(request: Request) -> Response:
    sim = _sim(request)
    task = sim.get(request.path_params["task_id"])
    now = sim.clock.now()
    if (
        task is None
        or request.path_params["name"] not in task.result_names()
        or task.status_at(now)[0] is not TaskStatus.COMPLETED
    ):
        return _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
    if task.link_expired_at(now):
        # Contract: output links are valid for 24 hours; an expired signature is a 403.
        return _cdn_error(403, "AccessDenied", "Request has expired")
    params = task.params
    spec = VideoSpec.for_request(params.quality, params.aspect_ratio, params.duration, params.generate_audio)
    path = await sim.videos.aensure(spec)
    clip = await asyncio.to_thread(path.read_bytes)
    body = ServedBody.build(clip, task.directives.size)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=86400"}
    try:
        wanted = None if task.directives.no_range else _byte_range(request.headers.get("range"), body.total)
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{body.total}"})
    start, end = wanted or (0, body.total)
    headers["Content-Length"] = str(end - start)
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{body.total}"
    faults = sim.faults
    cut_at: int | None = None
    if task.directives.truncate or sim.draw(faults.download_truncate_rate):
        cut_at = start + (end - start) // 2
    elif task.directives.cut_first_after is not None and task.downloads == 0:
        cut_at = start + task.directives.cut_first_after
    if request.method == "GET":
        sim.counters.downloads_served += 1
        task.downloads += 1
        sim.touch()

    def served(count: int) -> None:
        task.bytes_served += count
        sim.counters.download_bytes_served += count

    return _ResultStream(
        body,
        start,
        end,
        206 if wanted else 200,
        headers,
        rate=task.directives.rate or faults.download_bytes_per_second,
        cut_at=cut_at,
        head_only=request.method == "HEAD",
        on_sent=served,
    )


# -- /_sim: test and chaos control (unauthenticated: bind loopback only) --------------------------
async def sim_health(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def sim_image(request: Request) -> Response:
    found = await asyncio.to_thread(sample_image, request.path_params["name"])
    if found is None:
        return _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
    content_type, data = found
    return Response(data, media_type=content_type)


async def sim_config(request: Request) -> Response:
    sim = _sim(request)
    if request.method in ("PUT", "PATCH"):
        patch = await _json_object(request)
        try:
            faults = (
                FaultConfig.model_validate(patch) if request.method == "PUT" else sim.faults.merged(patch)
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(part) for part in first["loc"]) or None
            raise invalid(param, f"{param}: {first['msg']}") from None
        sim.set_faults(faults)
        logger.info("fault config changed: %s", json.dumps(patch, sort_keys=True))
    return JSONResponse(sim.faults.model_dump())


async def sim_clock(request: Request) -> Response:
    sim = _sim(request)
    if request.method == "POST":
        seconds = (await _json_object(request)).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise invalid("seconds", "seconds must be a non-negative number")
        sim.advance_clock(float(seconds))
    return JSONResponse({"now": sim.clock.now(), "time_scale": sim.clock.time_scale})


async def sim_stats(request: Request) -> Response:
    return JSONResponse(_sim(request).stats())


async def sim_tasks(request: Request) -> Response:
    tasks = _sim(request).task_list()
    wanted = request.query_params.get("prompt_sha256")
    if wanted:
        tasks = [task for task in tasks if task["prompt_sha256"] == wanted]
    return JSONResponse(tasks)


async def sim_task(request: Request) -> Response:
    """`DELETE /_sim/tasks/{id}`: the provider forgets the task (a purge, a restart).
    `POST /_sim/tasks/{id}/refuse {"status": 401|403}`: later API calls about it are refused
    (a revoked key, an account change)."""
    sim = _sim(request)
    task_id = request.path_params["task_id"]
    if request.method == "DELETE":
        if not sim.forget(task_id):
            raise ApiError(404, "task not found", param="task_id")
        return JSONResponse({"id": task_id, "forgotten": True})
    status = (await _json_object(request)).get("status")
    if status not in REFUSALS:
        raise invalid("status", f"status must be one of {sorted(REFUSALS)}")
    task = sim.refuse(task_id, status)
    if task is None:
        raise ApiError(404, "task not found", param="task_id")
    return JSONResponse({"id": task.id, "refused_status": task.refused_status})


async def sim_wait(request: Request) -> Response:
    """Blocks until counters reach the given minimums and (if named) a task has ended:
    `{"timeout": 10, "task_id": "...", "stats": {"callbacks_delivered": 2}}` -> 200, or 408 at
    the deadline. Tests wait on this instead of sleeping."""
    sim = _sim(request)
    body = await _json_object(request)
    timeout = body.get("timeout", 10)
    minimums = body.get("stats") or {}
    task_id = body.get("task_id")
    if not isinstance(timeout, int | float) or not isinstance(minimums, dict):
        raise invalid(None, "timeout must be a number and stats an object of counter minimums")
    unknown = set(minimums) - set(sim.counters.as_dict())
    if unknown:
        raise invalid("stats", f"unknown counters: {', '.join(sorted(unknown))}")
    if task_id is not None and task_id not in sim.tasks:
        raise ApiError(404, "task not found", param="task_id")

    def reached() -> bool:
        counters = sim.counters.as_dict()
        if any(counters[name] < minimum for name, minimum in minimums.items()):
            return False
        if task_id is None:
            return True
        task = sim.tasks.get(task_id)
        return task is None or task.settled  # a forgotten task will not settle any more

    ok = await sim.wait_until(reached, float(timeout))
    return JSONResponse({"ok": ok, "stats": sim.stats()}, status_code=200 if ok else 408)


# -- assembly --------------------------------------------------------------------------------------
async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.envelope(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = ApiError(exc.status_code, exc.detail or "error")
    return JSONResponse(error.envelope(), status_code=exc.status_code, headers=exc.headers)


def create_app(settings: SimulatorSettings) -> ASGIApp:
    """The ASGI app; `app.state.sim` (of the inner Starlette app) holds the simulator."""
    sim = Simulator(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sim.start()
        # Image checks: bounded, no redirects (a redirect could point at an internal host).
        async with httpx.AsyncClient(
            verify=sim.outbound_tls,
            follow_redirects=False,
            timeout=httpx.Timeout(5.0, read=10.0),
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as http:
            app.state.http = http
            try:
                yield
            finally:
                await sim.stop()

    routes = [
        Route("/v1/videos/generations", create_generation, methods=["POST"]),
        Route("/v1/tasks/{task_id}", get_task, methods=["GET"]),
        Route("/v1/tasks/{task_id}/cancel", cancel_task, methods=["POST"]),
        Route("/v1/credits", get_credits, methods=["GET"]),
        Route("/results/{task_id}/{name}", download_result, methods=["GET", "HEAD"]),
        Route("/_sim/health", sim_health, methods=["GET"]),
        Route("/_sim/images/{name}", sim_image, methods=["GET"]),
        Route("/_sim/config", sim_config, methods=["GET", "PUT", "PATCH"]),
        Route("/_sim/clock", sim_clock, methods=["GET"]),
        Route("/_sim/clock/advance", sim_clock, methods=["POST"]),
        Route("/_sim/stats", sim_stats, methods=["GET"]),
        Route("/_sim/tasks", sim_tasks, methods=["GET"]),
        Route("/_sim/tasks/{task_id}", sim_task, methods=["DELETE"]),
        Route("/_sim/tasks/{task_id}/refuse", sim_task, methods=["POST"]),
        Route("/_sim/wait", sim_wait, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
    app.state.sim = sim
    return _CaptureRawSend(app)
