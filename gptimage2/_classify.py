"""The one place that decides what a failure means: retry or not, which category, and for a
create whether a retry could bill twice (docs/provider-contract.md, "Create is not idempotent").

The activities raise what these verdicts say (retryable or not, with the category), the
workflow's messages come from them, and `workflows/policies.py` holds what is done with them
(attempts, backoff, deadlines).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CancelNotSupportedError,
    InvalidRequestError,
    ResponseLostError,
)


class FailureCategory(StrEnum):
    POLICY = "policy"  # content policy: never auto-retried, the user rewrites the prompt
    TRANSIENT = "transient"  # provider trouble: a new attempt may succeed
    INTERNAL = "internal"  # our side or an ambiguous state we refuse to guess about
    EXPIRED = "expired"  # the result link expired before it was re-hosted
    TIMEOUT = "timeout"  # the job TTL ran out
    INVALID = "invalid"  # the request itself is wrong: fix it, do not retry
    BUDGET = "budget"  # the tenant's credit budget would be crossed: nothing more was created


class CreateRetry(StrEnum):
    SAFE = "safe"  # the request surely never arrived: retrying cannot create a second task
    AMBIGUOUS = "ambiguous"  # it may have arrived: a blind retry may bill twice
    NEVER = "never"  # the provider refused it: retrying changes nothing


@dataclass(frozen=True)
class Classification:
    category: FailureCategory
    retryable: bool  # may the same call be retried (for a GET) / a new task be tried (task error)
    create_retry: CreateRetry
    alert: bool = False  # operators must act (credentials, quota)


POLICY_CODES = frozenset({"content_policy_violation"})
CALLER_CODES = frozenset(
    {
        "invalid_parameters",
        "image_dimension_mismatch",
        "image_processing_error",
        "request_cancelled",
        "resource_not_found",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "generation_timeout",
        "quota_exceeded",
        "resource_exhausted",
        "generation_failed_no_content",
        "service_error",
        "service_unavailable",
        "unknown_error",
    }
)

_NEVER = CreateRetry.NEVER
_HTTP: dict[int, Classification] = {
    400: Classification(FailureCategory.INVALID, False, _NEVER),
    401: Classification(FailureCategory.INTERNAL, False, _NEVER, alert=True),
    402: Classification(FailureCategory.INTERNAL, False, _NEVER, alert=True),
    403: Classification(FailureCategory.INTERNAL, False, _NEVER),
    404: Classification(FailureCategory.INVALID, False, _NEVER),
    413: Classification(FailureCategory.INVALID, False, _NEVER),
    # 429 and 503 are answered before processing: the task was not created.
    429: Classification(FailureCategory.TRANSIENT, True, CreateRetry.SAFE),
    503: Classification(FailureCategory.TRANSIENT, True, CreateRetry.SAFE),
    # A 500/502 may come after the task was created upstream, unless the gateway's own envelope
    # says it answered (classify_exception).
    500: Classification(FailureCategory.TRANSIENT, True, CreateRetry.AMBIGUOUS),
    502: Classification(FailureCategory.TRANSIENT, True, CreateRetry.AMBIGUOUS),
}


def classify_http_status(status_code: int) -> Classification:
    if status_code in _HTTP:
        return _HTTP[status_code]
    if status_code >= 500:
        return Classification(FailureCategory.TRANSIENT, True, CreateRetry.AMBIGUOUS)
    return Classification(FailureCategory.INVALID, False, _NEVER)


def classify_task_error(code: str | None) -> Classification:
    """A task that ended `failed`, by its `error.code`. Unknown codes count as transient (the
    contract lists `unknown_error` there) so a new provider code cannot wedge a generation."""
    code = (code or "unknown_error").lower()
    if code in POLICY_CODES:
        return Classification(FailureCategory.POLICY, False, _NEVER)
    if code in CALLER_CODES:
        return Classification(FailureCategory.INVALID, False, _NEVER)
    return Classification(FailureCategory.TRANSIENT, True, _NEVER)


# A completed task's result link that answers one of these expired (links live 24 h) or was
# withdrawn: there is nothing left to download, so no retry can help.
RESULT_EXPIRED_STATUSES = frozenset({403, 404, 410})


def classify_result_status(status_code: int) -> Classification | None:
    """A result link's answer to our download, when it is a verdict on the link: expired. None
    for any other answer (a success, a range answer, or trouble the re-host's retries handle)."""
    if status_code in RESULT_EXPIRED_STATUSES:
        return Classification(FailureCategory.EXPIRED, False, _NEVER)
    return None


def classify_exception(exc: BaseException) -> Classification:
    if isinstance(exc, APIStatusError):
        verdict = classify_http_status(exc.status_code)
        if verdict.create_retry is CreateRetry.AMBIGUOUS and exc.from_gateway:
            # Judged by evidence: a 5xx in the gateway's own error envelope means the gateway
            # answered, and it answers a create only once it has made the task or given up
            # (it does not answer "error" for a task it made). A bare 5xx (a proxy's page, an
            # empty body) or a dropped connection may hide a task: those stay ambiguous.
            return replace(verdict, create_retry=CreateRetry.SAFE)
        return verdict
    if isinstance(exc, APIConnectionError):
        return Classification(FailureCategory.TRANSIENT, True, CreateRetry.SAFE)
    if isinstance(exc, APITimeoutError | ResponseLostError):
        return Classification(FailureCategory.TRANSIENT, True, CreateRetry.AMBIGUOUS)
    if isinstance(exc, InvalidRequestError):
        return Classification(FailureCategory.INVALID, False, _NEVER)
    if isinstance(exc, CancelNotSupportedError):
        return Classification(FailureCategory.INVALID, False, _NEVER)
    return Classification(FailureCategory.INTERNAL, False, CreateRetry.AMBIGUOUS)


POLICY_GUIDANCE = (
    "The provider's content policy refused this prompt. Rewrite it before trying again: describe "
    "the scene neutrally, remove references to real people, brands, violence or sexual content, "
    "and keep spoken lines in double quotes free of sensitive wording. It will not be retried "
    "automatically."
)
