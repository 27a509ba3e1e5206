"""What the routes do, in the problem's words: start, find, list, cancel, decide, forward a
callback. Each maps the control layer's typed outcomes onto the API's errors; the routes only
read the request and pick the status code."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from gptimage2 import ProviderTask
from settings import Settings
from storage import make_minio, with_fresh_urls
from workflows import budget_start, control
from workflows.budget import ReserveResult
from workflows.callback_token import verify_callback_token
from workflows.generation import VideoGenerationWorkflow
from workflows.models import GenerationStatus, GenerationView, ProviderCallback

from .budgets import BudgetExceeded, BudgetService
from .config import ApiConfig
from .errors import ApiError, FieldError, error_type
from .expected import ExpectedReady
from .jsonbody import BodyRefused, parse_json_object
from .metrics import ApiMetrics
from .paging import PageTokens
from .redact import redact_body
from .schemas import CreateGenerationRequest, GenerationOut, GenerationPage, GenerationSummary
from .temporal import TemporalGateway, TemporalUnavailable
from .text import text_problem

if TYPE_CHECKING:
    from .webhooks import WebhookService

callback_log = logging.getLogger("api.callbacks")

TASK_ID_MAX = 256
TASK_STATUS_MAX = 64


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
    def __init__(
        self,
        gateway: TemporalGateway,
        settings: Settings,
        metrics: ApiMetrics,
        expected: ExpectedReady | None = None,
        budgets: BudgetService | None = None,
        webhooks: WebhookService | None = None,
    ) -> None:
        self.gateway = gateway
        self.settings = settings
        self.metrics = metrics
        self.expected = expected
        self.budgets = budgets
        self.webhooks = webhooks
        self.page_tokens = PageTokens(settings.callback_secret.get_secret_value())
        self.store = make_minio(settings)

    async def start(self, tenant: str, idempotency_key: str, request: CreateGenerationRequest) -> Started:
        spec = request.to_spec()
        budgets = self.budgets
        plan = None
        if self.webhooks is not None:
            if spec.notify_url:
                await self.webhooks.check_url("notify_url", spec.notify_url)
            plan = await self.webhooks.plan(tenant, spec.notify_url)

        async def start(client: Client) -> tuple[control.StartResult, ReserveResult | None]:
            # Reserve before start: over budget, nothing starts (402).
            budgeted = budgets is not None and await budgets.is_budgeted(client, tenant)
            return await budget_start.start_within_budget(
                client,
                tenant=tenant,
                idempotency_key=idempotency_key,
                spec=spec,
                task_queue=self.settings.task_queue,
                budgeted=budgeted,
                configured=self.settings.tenant_budgets.get(tenant),
                webhooks=plan,
                metrics_tenant_label=self.settings.metrics_tenant_label,
            )

        try:
            result, reserved = await self.gateway.call(start)
        except control.IdempotencyConflict as exc:
            self.metrics.generations.labels("conflict").inc()
            raise ApiError(409, "idempotency_conflict", str(exc)) from exc
        except budget_start.OverBudget as exc:
            self.metrics.generations.labels("over_budget").inc()
            if budgets:
                budgets.refused(tenant, exc)
            raise BudgetExceeded(exc.refusal) from exc
        except TemporalUnavailable as exc:
            raise unavailable(exc) from exc
        if budgets and reserved:
            budgets.reserved(tenant, reserved)
        self.metrics.generations.labels("started" if result.created else "duplicate").inc()
        return Started(self._out(result.view), result.created)

    async def get(self, tenant: str, generation_id: str) -> GenerationOut:
        out = await self._view_of(
            generation_id,
            lambda client: control.describe_generation(client, generation_id, tenant=tenant),
        )
        return await self.expected.apply(out) if self.expected else out

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
                message = "page_token is not valid for this query"
                raise ApiError(
                    400, "invalid_request", message, fields=[FieldError(field="page_token", message=message)]
                )

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
    LATE = "late"  # the generation has ended: acknowledged, nothing left to deliver
    BAD_TOKEN = "bad_token"
    BAD_BODY = "bad_body"
    UNKNOWN = "unknown_generation"
    UNAVAILABLE = "temporal_unavailable"


HintKey = tuple[str, str, str]  # (workflow id, task id, status)
K = TypeVar("K", bound=Hashable)


class Recent(Generic[K]):
    """The last `capacity` keys seen, oldest forgotten first (0 remembers nothing)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[K, None] = OrderedDict()

    def __contains__(self, key: K) -> bool:
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: K) -> None:
        if self.capacity <= 0:
            return
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


class CallbackRejected(ApiError):
    def __init__(
        self, outcome: CallbackOutcome, status_code: int, message: str, *, fields: Sequence[FieldError] = ()
    ) -> None:
        super().__init__(status_code, error_type(status_code), message, fields=fields)
        if status_code == 503:
            self.headers["Retry-After"] = "1"
        self.outcome = outcome


def parse_callback(raw: bytes, content_type: str | None) -> ProviderCallback:
    """Tolerant: any JSON object with a string `id` is a hint. Everything else in it is
    optional, because the callback only wakes the workflow, which then re-reads the task. The
    id and status reach the workflow's history, so they must be text (`api.text`) of a sane
    length; the body as a whole must be plain JSON (`api.jsonbody`)."""
    try:
        body = parse_json_object(raw, content_type)
    except BodyRefused as exc:
        error = exc.api_error(malformed=400)
        raise CallbackRejected(
            CallbackOutcome.BAD_BODY, error.status_code, error.message, fields=error.fields
        ) from None
    task_id, status = body.get("id"), body.get("status")
    if not isinstance(task_id, str) or not task_id or len(task_id) > TASK_ID_MAX:
        raise CallbackRejected(
            CallbackOutcome.BAD_BODY,
            400,
            f"body must be a JSON object with a string `id` of 1-{TASK_ID_MAX} characters",
            fields=[FieldError(field="id", message=f"a string of 1-{TASK_ID_MAX} characters is required")],
        )
    problems = [
        FieldError(field=field, message=problem)
        for field, problem in (("id", text_problem(task_id)), ("status", _status_problem(status)))
        if problem
    ]
    if problems:
        raise CallbackRejected(
            CallbackOutcome.BAD_BODY,
            400,
            "invalid callback: " + "; ".join(f"{p.field} {p.message}" for p in problems),
            fields=problems,
        )
    try:
        credits = ProviderTask.model_validate(body).credits
    except ValidationError:
        credits = 0.0
    return ProviderCallback(
        task_id=task_id, status=status.lower() if isinstance(status, str) else "", credits=credits
    )


def _status_problem(status: object) -> str | None:
    if not isinstance(status, str):
        return None  # tolerated: read as "no status"
    if len(status) > TASK_STATUS_MAX:
        return f"is longer than {TASK_STATUS_MAX} characters"
    return text_problem(status)


class CallbackService:
    def __init__(self, gateway: TemporalGateway, settings: Settings, config: ApiConfig) -> None:
        self.gateway = gateway
        self.secret = settings.callback_secret.get_secret_value()
        self.log_bytes = config.callback_log_bytes
        self.answer_within = config.callback_answer_within_seconds
        self.max_pending = config.callback_max_pending
        self._pending: set[asyncio.Task[CallbackOutcome]] = set()  # signals answered before they landed
        self._in_flight: dict[HintKey, asyncio.Task[CallbackOutcome]] = {}
        # Hints delivered to their workflows. The provider repeats a callback after 1, 2 and 4 s
        # when an answer is slow, and may duplicate it; a repeat carries nothing the workflow
        # does not have (it re-reads the task anyway), so answering it here spares Temporal a
        # signal and a workflow task just when it is busiest.
        self.delivered: Recent[HintKey] = Recent(config.callback_dedup_entries)
        # Generations found to have ended: every later callback for one is answered `late`
        # without asking Temporal again.
        self.ended: Recent[str] = Recent(config.callback_dedup_entries)

    async def receive(self, token: str, raw: bytes, content_type: str | None) -> CallbackOutcome:
        """Signals the generation the token names, or raises CallbackRejected. A hint this
        replica has already delivered is answered without a signal; one still on its way is
        joined, not sent twice; one for a generation known to have ended is acknowledged."""
        workflow_id = verify_callback_token(self.secret, token)
        if workflow_id is None:
            raise CallbackRejected(CallbackOutcome.BAD_TOKEN, 401, "invalid callback token")
        if callback_log.isEnabledFor(logging.INFO):  # redaction costs more than the rest of the route
            callback_log.info("callback for %s: %s", workflow_id, redact_body(raw, self.log_bytes))
        hint = parse_callback(raw, content_type)
        key = (workflow_id, hint.task_id, hint.status)
        if key in self.delivered:
            return CallbackOutcome.DUPLICATE
        if workflow_id in self.ended:
            return CallbackOutcome.LATE

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
            return delivery.result()  # raises CallbackRejected when the signal was refused
        # Answer fast, work afterwards (docs/provider-contract.md, "Callbacks"): the signal finishes in the
        # background. A crash before it lands loses only a hint, which polling makes up for.
        if delivery not in self._pending:
            self._pending.add(delivery)
            delivery.add_done_callback(self._settle_deferred)
        return CallbackOutcome.DEFERRED

    def _landed(self, key: HintKey, delivery: asyncio.Task[CallbackOutcome]) -> None:
        self._in_flight.pop(key, None)
        if delivery.cancelled() or delivery.exception() is not None:
            return  # a refused hint may come again
        if delivery.result() is CallbackOutcome.LATE:
            self.ended.add(key[0])
        else:
            self.delivered.add(key)  # only what reached the workflow

    async def _signal(self, workflow_id: str, hint: ProviderCallback) -> CallbackOutcome:
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
            # Only on this rare path (once per ended generation and replica, see `ended`):
            # tell "never existed" (404) from "already ended" (acknowledged: a callback about a
            # generation that is over is not an error, and a non-2xx would only be retried).
            await self._check_ended(workflow_id)
            return CallbackOutcome.LATE
        return CallbackOutcome.ACCEPTED

    def _settle_deferred(self, delivery: asyncio.Task[CallbackOutcome]) -> None:
        self._pending.discard(delivery)
        if delivery.cancelled():
            return
        error = delivery.exception()
        if error is not None:
            callback_log.warning("deferred callback signal failed: %s", error)

    async def _check_ended(self, workflow_id: str) -> None:
        """Returns if the generation exists and has ended, else raises CallbackRejected."""

        async def describe(client: Client) -> WorkflowExecutionStatus | None:
            return (await client.get_workflow_handle(workflow_id).describe()).status

        try:
            status = await self.gateway.call(describe)
        except TemporalUnavailable as exc:
            raise CallbackRejected(CallbackOutcome.UNAVAILABLE, 503, f"{exc}; retry") from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise CallbackRejected(CallbackOutcome.UNKNOWN, 404, "no such generation") from exc
            raise
        if status == WorkflowExecutionStatus.RUNNING:
            # Not found a moment ago, running now: nothing to conclude; the provider retries.
            raise CallbackRejected(
                CallbackOutcome.UNAVAILABLE, 503, "the generation could not be signalled; retry"
            )
