"""What the routes do, in the problem's words: start, find, list, cancel, decide, forward a
callback. Each maps the control layer's typed outcomes onto the API's errors; the routes only
read the request and pick the status code."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.storage import make_minio, with_fresh_urls
from gptimage2 import ProviderTask
from settings import Settings
from workflows import control
from workflows.callback_token import verify_callback_token
from workflows.generation import VideoGenerationWorkflow
from workflows.models import GenerationStatus, GenerationView, ProviderCallback

from .config import ApiConfig
from .errors import ApiError
from .metrics import ApiMetrics
from .paging import PageTokens
from .redact import redact_body
from .schemas import CreateGenerationRequest, GenerationOut, GenerationPage, GenerationSummary
from .temporal import TemporalGateway, TemporalUnavailable

callback_log = logging.getLogger("api.callbacks")

TASK_ID_MAX = 256


def unavailable(exc: TemporalUnavailable) -> ApiError:
    return ApiError(503, "service_unavailable", f"{exc}; retry shortly", headers={"Retry-After": "1"})


def not_found(generation_id: str) -> ApiError:
    # The same answer for "unknown" and "another tenant's": ids must not be probeable.
    return ApiError(404, "not_found", f"no generation {generation_id[:100]!r}")


@dataclass(frozen=True)
class Started:
    generation: GenerationOut
    created: bool


class GenerationService:
    def __init__(self, gateway: TemporalGateway, settings: Settings, metrics: ApiMetrics) -> None:
        self.gateway = gateway
        self.settings = settings
        self.metrics = metrics
        self.page_tokens = PageTokens(settings.callback_secret.get_secret_value())
        self.store = make_minio(settings)

    async def start(self, tenant: str, idempotency_key: str, request: CreateGenerationRequest) -> Started:
        spec = request.to_spec()

        async def start(client: Client) -> control.StartResult:
            return await control.start_generation(
                client,
                tenant=tenant,
                idempotency_key=idempotency_key,
                spec=spec,
                task_queue=self.settings.task_queue,
            )

        try:
            result = await self.gateway.call(start)
        except control.IdempotencyConflict as exc:
            self.metrics.generations.labels("conflict").inc()
            raise ApiError(409, "idempotency_conflict", str(exc)) from exc
        except TemporalUnavailable as exc:
            raise unavailable(exc) from exc
        self.metrics.generations.labels("started" if result.created else "duplicate").inc()
        return Started(self._out(result.view), result.created)

    async def get(self, tenant: str, generation_id: str) -> GenerationOut:
        return await self._view_of(
            generation_id,
            lambda client: control.describe_generation(client, generation_id, tenant=tenant),
        )

    async def cancel(self, tenant: str, generation_id: str) -> GenerationOut:
        return await self._view_of(
            generation_id,
            lambda client: control.cancel_generation(client, generation_id, tenant=tenant),
        )

    async def decide(self, tenant: str, generation_id: str, *, approved: bool) -> GenerationOut:
        try:
            return await self._view_of(
                generation_id,
                lambda client: control.decide_approval(
                    client, generation_id, tenant=tenant, approved=approved
                ),
            )
        except control.NotAwaitingApproval as exc:
            raise ApiError(409, "not_awaiting_approval", str(exc)) from exc

    async def list(
        self,
        tenant: str,
        *,
        status: GenerationStatus | None,
        user_id: str | None,
        page_size: int,
        page_token: str | None,
    ) -> GenerationPage:
        scope = f"{tenant}\x00{status.value if status else ''}\x00{user_id or ''}"
        inner = None
        if page_token is not None:
            inner = self.page_tokens.open(page_token, scope)
            if inner is None:
                raise ApiError(400, "invalid_request", "page_token is not valid for this query")

        async def page(client: Client) -> control.GenerationPage:
            return await control.list_generations(
                client, tenant=tenant, status=status, user_id=user_id, page_size=page_size, page_token=inner
            )

        try:
            found = await self.gateway.call(page)
        except TemporalUnavailable as exc:
            raise unavailable(exc) from exc
        return GenerationPage(
            data=[GenerationSummary(id=i, status=found.statuses.get(i, "")) for i in found.ids],
            next_page_token=self.page_tokens.seal(found.next_page_token, scope)
            if found.next_page_token
            else None,
        )

    async def _view_of(
        self, generation_id: str, operation: Callable[[Client], Awaitable[GenerationView]]
    ) -> GenerationOut:
        try:
            view = await self.gateway.call(operation)
        except control.GenerationNotFound as exc:
            raise not_found(generation_id) from exc
        except TemporalUnavailable as exc:
            raise unavailable(exc) from exc
        return self._out(view)

    def _out(self, view: GenerationView) -> GenerationOut:
        return GenerationOut.from_view(with_fresh_urls(view, self.store, self.settings))


class CallbackOutcome(StrEnum):
    ACCEPTED = "accepted"
    DEFERRED = "deferred"  # accepted; the signal is still on its way to the workflow
    DUPLICATE = "duplicate"  # a repeat of a hint this replica already delivered: not signalled
    BAD_TOKEN = "bad_token"
    BAD_BODY = "bad_body"
    UNKNOWN = "unknown_generation"
    CLOSED = "closed"
    UNAVAILABLE = "temporal_unavailable"


HintKey = tuple[str, str, str]  # (workflow id, task id, status)


class RecentHints:
    """The last `capacity` hints delivered to their workflows, oldest forgotten first. The
    provider repeats a callback after 1, 2 and 4 s when an answer is slow, and may duplicate
    it; a repeat carries nothing the workflow does not have (it re-reads the task anyway), so
    answering it here spares Temporal a signal and a workflow task just when it is busiest."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[HintKey, None] = OrderedDict()

    def __contains__(self, key: HintKey) -> bool:
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: HintKey) -> None:
        if self.capacity <= 0:
            return
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


class CallbackRejected(ApiError):
    def __init__(self, outcome: CallbackOutcome, status_code: int, message: str) -> None:
        kind = {401: "authentication_error", 400: "invalid_request", 404: "not_found", 410: "gone"}
        super().__init__(status_code, kind.get(status_code, "service_unavailable"), message)
        if status_code == 503:
            self.headers["Retry-After"] = "1"
        self.outcome = outcome


def parse_callback(raw: bytes) -> ProviderCallback:
    """Tolerant: any JSON object with a string `id` is a hint. Everything else in it is
    optional, because the callback only wakes the workflow, which then re-reads the task."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CallbackRejected(CallbackOutcome.BAD_BODY, 400, "body is not JSON") from None
    task_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(task_id, str) or not task_id or len(task_id) > TASK_ID_MAX:
        raise CallbackRejected(CallbackOutcome.BAD_BODY, 400, "body must be a JSON object with a string `id`")
    status = body.get("status")
    try:
        credits = ProviderTask.model_validate(body).credits
    except ValidationError:
        credits = 0.0
    return ProviderCallback(
        task_id=task_id, status=status.lower() if isinstance(status, str) else "", credits=credits
    )


class CallbackService:
    def __init__(self, gateway: TemporalGateway, settings: Settings, config: ApiConfig) -> None:
        self.gateway = gateway
        self.secret = settings.callback_secret.get_secret_value()
        self.log_bytes = config.callback_log_bytes
        self.answer_within = config.callback_answer_within_seconds
        self.max_pending = config.callback_max_pending
        self._pending: set[asyncio.Task[None]] = set()  # signals answered before they landed
        self._in_flight: dict[HintKey, asyncio.Task[None]] = {}
        self.delivered = RecentHints(config.callback_dedup_entries)

    async def receive(self, token: str, raw: bytes) -> CallbackOutcome:
        """Signals the generation the token names, or raises CallbackRejected. A hint this
        replica has already delivered is answered without a signal; one still on its way is
        joined, not sent twice."""
        workflow_id = verify_callback_token(self.secret, token)
        if workflow_id is None:
            raise CallbackRejected(CallbackOutcome.BAD_TOKEN, 401, "invalid callback token")
        if callback_log.isEnabledFor(logging.INFO):  # redaction costs more than the rest of the route
            callback_log.info("callback for %s: %s", workflow_id, redact_body(raw, self.log_bytes))
        hint = parse_callback(raw)
        key = (workflow_id, hint.task_id, hint.status)
        if key in self.delivered:
            return CallbackOutcome.DUPLICATE

        delivery = self._in_flight.get(key)
        if delivery is None:
            if len(self._pending) >= self.max_pending:
                # Temporal is far behind: refuse rather than queue without bound; the provider
                # retries (1, 2, 4 s) and polling covers whatever it gives up on.
                raise CallbackRejected(
                    CallbackOutcome.UNAVAILABLE, 503, "too many callbacks in flight; retry"
                )
            delivery = asyncio.create_task(self._signal(workflow_id, hint))
            self._in_flight[key] = delivery
            delivery.add_done_callback(lambda task: self._landed(key, task))
        done, _ = await asyncio.wait({delivery}, timeout=self.answer_within)
        if done:
            delivery.result()  # raises CallbackRejected when the signal was refused
            return CallbackOutcome.ACCEPTED
        # "Respond 2xx fast; enqueue work" (integration guide): the signal finishes in the
        # background. A crash before it lands loses only a hint, which polling makes up for.
        if delivery not in self._pending:
            self._pending.add(delivery)
            delivery.add_done_callback(self._settle_deferred)
        return CallbackOutcome.DEFERRED

    def _landed(self, key: HintKey, delivery: asyncio.Task[None]) -> None:
        self._in_flight.pop(key, None)
        if not delivery.cancelled() and delivery.exception() is None:
            self.delivered.add(key)  # only what reached the workflow: a refused hint may come again

    async def _signal(self, workflow_id: str, hint: ProviderCallback) -> None:
        async def signal(client: Client) -> None:
            handle = client.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)
            await handle.signal(VideoGenerationWorkflow.provider_callback, hint)

        try:
            await self.gateway.call(signal)
        except TemporalUnavailable as exc:
            raise CallbackRejected(CallbackOutcome.UNAVAILABLE, 503, f"{exc}; retry") from exc
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # Only on this rare path: tell "never existed" from "already ended". The provider
            # stops retrying on either; 410 tells the operator reading logs which it was.
            raise await self._why_not_found(workflow_id) from exc

    def _settle_deferred(self, delivery: asyncio.Task[None]) -> None:
        self._pending.discard(delivery)
        if delivery.cancelled():
            return
        error = delivery.exception()
        if error is not None:
            callback_log.warning("deferred callback signal failed: %s", error)

    async def _why_not_found(self, workflow_id: str) -> CallbackRejected:
        async def describe(client: Client) -> None:
            await client.get_workflow_handle(workflow_id).describe()

        try:
            await self.gateway.call(describe)
        except TemporalUnavailable as exc:
            return CallbackRejected(CallbackOutcome.UNAVAILABLE, 503, f"{exc}; retry")
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return CallbackRejected(CallbackOutcome.UNKNOWN, 404, "no such generation")
            raise
        return CallbackRejected(CallbackOutcome.CLOSED, 410, "the generation has already ended")
