from __future__ import annotations

import time

from fastapi import APIRouter, Request

from workflows.callback_token import CALLBACK_PATH

from ..deps import Services
from ..errors import error_responses
from ..schemas import CallbackAccepted, CallbackStatus
from ..service import CallbackOutcome, CallbackRejected

ANSWERS: dict[CallbackOutcome, CallbackStatus] = {
    CallbackOutcome.DUPLICATE: "duplicate",
    CallbackOutcome.LATE: "late",
}

# Each outcome's class, as `api_callback_results_total{result}` counts it: `forged` (a token
# that does not verify: an attack, or a callback secret changed under running generations) and
# `error` (unreadable body, Temporal unavailable: the provider's retries may still land) are
# the failures the callback alert watches.
CALLBACK_RESULTS: dict[CallbackOutcome, str] = {
    CallbackOutcome.ACCEPTED: "ok",
    CallbackOutcome.DEFERRED: "ok",
    CallbackOutcome.DUPLICATE: "duplicate",
    CallbackOutcome.LATE: "late",
    CallbackOutcome.BAD_TOKEN: "forged",
    CallbackOutcome.UNKNOWN: "unknown_generation",
    CallbackOutcome.BAD_BODY: "error",
    CallbackOutcome.UNAVAILABLE: "error",
}

router = APIRouter(tags=["callbacks"])


@router.post(
    # The path the worker mints callback URLs with (workflows.callback_token.callback_url).
    CALLBACK_PATH + "{token}",
    response_model=CallbackAccepted,
    responses=error_responses(400, 401, 404, 413, 415, 431, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
        }
    },
    summary="The provider's task callback (the token in the path is the credential)",
)
async def provider_callback(token: str, request: Request, services: Services) -> CallbackAccepted:
    """Signals the generation; the workflow re-reads the task itself, so nothing slow runs here.
    When Temporal is slow to take the signal, the answer does not wait for it (the provider
    gives up on answers slower than 10 s): the signal completes in the background. A repeat of
    a hint already delivered is answered `duplicate` without signalling again, and a callback
    for a generation that has already ended `late` (both 200: neither is worth a retry)."""
    started = time.perf_counter()
    outcome = CallbackOutcome.ACCEPTED
    crashed = False
    try:
        outcome = await services.callbacks.receive(
            token, await request.body(), request.headers.get("content-type")
        )
    except CallbackRejected as exc:
        outcome = exc.outcome
        raise
    except Exception:
        crashed = True
        raise
    finally:
        services.metrics.callbacks.labels(outcome.value).inc()
        services.metrics.callback_results.labels("error" if crashed else CALLBACK_RESULTS[outcome]).inc()
        services.metrics.callback_seconds.observe(time.perf_counter() - started)
    return CallbackAccepted(status=ANSWERS.get(outcome, "accepted"))
