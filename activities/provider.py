"""Activities that talk to the provider. Each one turns a client error into an
`ApplicationError` whose retryability comes from `gptimage2.classify_exception`, so the
contract's table (not this file) decides what is retried."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from gptimage2 import (
    MAX_IMAGE_BYTES,
    CancelNotSupportedError,
    Classification,
    CreateRetry,
    CreateVideoRequest,
    FailureCategory,
    GPTImage2Client,
    GPTImage2Error,
    ProviderTask,
    RateLimitError,
    classify_exception,
)
from netguard import GuardedClient, NetguardError, probe_image
from workflows import metrics
from workflows.callback_token import callback_url
from workflows.models import ActivityErrorType, CreateTaskInput
from workflows.policies import CREATE_BACKOFF, CREATE_MAX_WAIT


class ProviderActivities:
    def __init__(
        self,
        client: GPTImage2Client,
        *,
        callback_base_url: str | None,
        callback_secret: str,
        image_guard: GuardedClient | None = None,
    ) -> None:
        self._client = client
        self._image_guard = image_guard
        self._callback_base_url = callback_base_url
        self._callback_secret = callback_secret

    @activity.defn
    async def create_task(self, task: CreateTaskInput) -> ProviderTask:
        # The callback URL carries an HMAC token; it is minted here so the secret-bearing URL
        # never enters workflow history.
        request = CreateVideoRequest(
            **task.params.model_dump(),
            callback_url=(
                callback_url(self._callback_base_url, self._callback_secret, task.workflow_id)
                if self._callback_base_url
                else None
            ),
        )
        if task.inline and task.may_have_run_before:
            raise _final(
                "the create was asked for again after its first workflow task was lost (its worker "
                "died?): the first request may have reached the provider",
                FailureCategory.INTERNAL,
                ActivityErrorType.CREATE_AMBIGUOUS,
            )
        await self._recheck_images(task.params.image_urls)
        # Retried here, not by Temporal (the workflow runs this activity once): only failures
        # where the request surely never arrived, with backoff that honours Retry-After. An
        # inline create is tried once (workflows/policies.py, "create").
        for delay in (*(() if task.inline else CREATE_BACKOFF), None):
            try:
                created = await self._client.create_task(request)
            except GPTImage2Error as exc:
                verdict = classify_exception(exc)
                if verdict.create_retry is CreateRetry.SAFE and delay is not None:
                    wait = exc.retry_after if isinstance(exc, RateLimitError) and exc.retry_after else delay
                    activity.logger.info(
                        "create did not reach the provider (%s); retrying in %.1f s", exc, wait
                    )
                    await asyncio.sleep(min(wait, CREATE_MAX_WAIT))
                    continue
                if verdict.create_retry is CreateRetry.SAFE and task.inline:
                    message = f"the inline create did not reach the provider ({exc}); created as an activity"
                    raise _final(message, verdict.category, ActivityErrorType.CREATE_NOT_SENT) from exc
                raise _create_failure(exc, verdict) from exc
            metrics.record_task_created(activity.metric_meter(), callbacks=request.callback_url is not None)
            return created
        raise AssertionError("unreachable")

    async def _recheck_images(self, urls: list[str]) -> None:
        """The API checked these URLs when the request came in; what they serve (or where they
        point) may have changed since, and the provider fetches them from its side, so they are
        checked again right before the create that pays for them."""
        if self._image_guard is None:
            return
        for index, url in enumerate(urls):
            try:
                await probe_image(self._image_guard, url, max_bytes=MAX_IMAGE_BYTES)
            except NetguardError as exc:
                raise _final(
                    f"image_urls[{index}] is no longer acceptable: {exc}",
                    FailureCategory.INVALID,
                    ActivityErrorType.PROVIDER_REJECTED,
                ) from exc

    @activity.defn
    async def get_task(self, task_id: str) -> ProviderTask:
        try:
            return await self._client.get_task(task_id)
        except GPTImage2Error as exc:
            verdict = classify_exception(exc)
            if verdict.retryable:
                raise _retryable(exc) from exc
            # The provider accepted this task, so a read refused for good says nothing about the
            # request (the table's categories are about creates): the task was purged (404) or
            # our key or account lost access (401/403). Nothing the user can fix: internal.
            if verdict.alert:
                activity.logger.error(
                    "provider refused reading task %s; operators must act: %s", task_id, exc
                )
            raise _final(
                f"provider refused the task read: {exc}",
                FailureCategory.INTERNAL,
                ActivityErrorType.PROVIDER_REJECTED,
            ) from exc

    @activity.defn
    async def cancel_task(self, task_id: str) -> ProviderTask | None:
        """Best effort: None when the provider cannot cancel this task (any more)."""
        try:
            return await self._client.cancel_task(task_id)
        except CancelNotSupportedError:
            return None
        except GPTImage2Error as exc:
            if classify_exception(exc).retryable:
                raise _retryable(exc) from exc
            return None


def _final(message: str, category: FailureCategory, error_type: str) -> ApplicationError:
    """A failure the activity will not retry; the workflow reads `category` from its details."""
    return ApplicationError(message, category.value, type=error_type, non_retryable=True)


def _create_failure(exc: GPTImage2Error, verdict: Classification) -> ApplicationError:
    if verdict.create_retry is CreateRetry.SAFE:
        message = f"the provider could not be reached to create the task: {exc}"
        return _final(message, verdict.category, type(exc).__name__)
    if verdict.create_retry is CreateRetry.AMBIGUOUS:
        message = f"create may have reached the provider ({exc}); not retried blindly, to avoid a second bill"
        return _final(message, verdict.category, ActivityErrorType.CREATE_AMBIGUOUS)
    return _final(f"provider refused the task: {exc}", verdict.category, ActivityErrorType.PROVIDER_REJECTED)


def _retryable(exc: GPTImage2Error) -> ApplicationError:
    # 429 says when to come back: honour Retry-After instead of our own backoff.
    delay = exc.retry_after if isinstance(exc, RateLimitError) else None
    return ApplicationError(
        str(exc),
        classify_exception(exc).category.value,
        type=type(exc).__name__,
        next_retry_delay=timedelta(seconds=delay) if delay else None,
    )
