"""One webhook delivery attempt: resolve the endpoint (URL, active secrets, disabled?), build
and sign the body, POST it through netguard, classify the answer.

Safe sender: the destination passes netguard at every attempt (no private, loopback,
link-local or metadata address unless allow-listed; the connection goes to the address that
was checked), no redirect is followed, HTTPS only outside dev, the whole exchange is bounded by
the attempt's timeout (ATTEMPT_TIMEOUT; FIRST_ATTEMPT_TIMEOUT for the generation's own) and at
most MAX_RESPONSE_BYTES of the answer are read. A 410 disables the endpoint in its tenant's
registry before the attempt returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from minio import Minio
from temporalio import activity
from temporalio.client import Client

from netguard import FetchFailed, GuardedClient, NetguardError, Resolver, UnsafeURL, system_resolver
from settings import Settings, outbound_trust
from webhooks.endpoints import EndpointDirectory, destination_schemes
from webhooks.metrics import record_attempt
from webhooks.payload import webhook_body
from webhooks.signing import signed_headers
from workflows.webhook_delivery import DELIVER_ACTIVITY
from workflows.webhook_models import (
    ATTEMPT_TIMEOUT,
    MAX_RESPONSE_BYTES,
    AttemptInput,
    AttemptOutcome,
    AttemptResult,
)

logger = logging.getLogger("activities.webhooks")
USER_AGENT = "reliable-video-webhooks/1"


class WebhookActivities:
    def __init__(
        self,
        settings: Settings,
        client: Client,
        store: Minio,
        *,
        directory: EndpointDirectory | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.directory = directory or EndpointDirectory(settings)
        self.guard = GuardedClient(
            allowed_private_hosts=settings.allowed_private_hosts,
            resolver=resolver,
            verify=outbound_trust(settings),
            timeout=ATTEMPT_TIMEOUT.total_seconds(),
            max_redirects=0,
            schemes=destination_schemes(settings),
        )

    async def close(self) -> None:
        await self.guard.aclose()

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_webhook(self, job: AttemptInput) -> AttemptResult:
        result = await self.attempt(job)
        record_attempt(activity.metric_meter(), job.event, result)
        return result

    async def attempt(self, job: AttemptInput) -> AttemptResult:
        now = datetime.now(UTC)

        def result(outcome: AttemptOutcome, **fields: object) -> AttemptResult:
            return AttemptResult.model_validate(
                {"attempt": job.attempt, "outcome": outcome, "at": now, **fields}
            )

        endpoint = await self.directory.resolve(self.client, job.tenant, job.target)
        if endpoint is None:
            return result(AttemptOutcome.DISABLED, error="the endpoint was removed")
        if endpoint.disabled:
            return result(AttemptOutcome.DISABLED, error=f"the endpoint is disabled: {endpoint.disabled}")
        body = webhook_body(job.event, job.view, now, self.store, self.settings)
        headers = {
            **signed_headers(endpoint.secrets, job.webhook_id, int(now.timestamp()), body),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        started = time.perf_counter()
        try:
            async with asyncio.timeout(job.timeout_seconds):
                answer = await self.guard.post(
                    endpoint.url, headers=headers, content=body, max_bytes=MAX_RESPONSE_BYTES
                )
        except UnsafeURL as exc:
            return result(AttemptOutcome.REFUSED, error=exc.reason)
        except (FetchFailed, NetguardError) as exc:
            return result(AttemptOutcome.FAILED, error=exc.reason, duration_ms=_ms_since(started))
        except TimeoutError:
            return result(
                AttemptOutcome.FAILED,
                error=f"no complete answer within {job.timeout_seconds:g} s",
                duration_ms=_ms_since(started),
            )
        status = answer.status_code
        answered = {
            "status_code": status,
            "duration_ms": _ms_since(started),
            "response_excerpt": answer.head.decode("utf-8", "replace"),
        }
        if 200 <= status < 300:
            return result(AttemptOutcome.DELIVERED, **answered)
        if status == 410 and job.target.url is None:
            reason = f"answered 410 Gone to {job.webhook_id} at {now.isoformat()}"
            await self.directory.disable(
                self.client, job.tenant, activity.info().task_queue, job.target.endpoint_id, reason
            )
            return result(AttemptOutcome.GONE, error="410 Gone: endpoint disabled", **answered)
        if status == 410:  # a request's own notify_url: no more attempts, nothing else to disable
            return result(AttemptOutcome.GONE, error="410 Gone: no more attempts", **answered)
        return result(AttemptOutcome.FAILED, error=f"answered {status}", **answered)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
