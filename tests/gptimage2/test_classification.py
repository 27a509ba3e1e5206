"""gptimage2._classify row by row against docs/provider-contract.md: every HTTP status in the
contract's table, every task error code, every exception the client raises."""

from __future__ import annotations

import pytest

from gptimage2 import (
    POLICY_GUIDANCE,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CancelNotSupportedError,
    Classification,
    CreateRetry,
    FailureCategory,
    InsufficientQuotaError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ResponseLostError,
    ServiceUnavailableError,
    UpstreamError,
    classify_exception,
    classify_http_status,
    classify_result_status,
    classify_task_error,
)
from gptimage2._classify import CALLER_CODES, POLICY_CODES, TRANSIENT_CODES
from gptimage2._exceptions import STATUS_ERRORS

C, R = FailureCategory, CreateRetry

# (status, exception class, category, retryable, create retry, alert) -- the contract's table.
HTTP_TABLE = [
    (400, BadRequestError, C.INVALID, False, R.NEVER, False),
    (401, AuthenticationError, C.INTERNAL, False, R.NEVER, True),  # "do not retry; alert"
    (402, InsufficientQuotaError, C.INTERNAL, False, R.NEVER, True),  # "do not retry; alert"
    (403, PermissionDeniedError, C.INTERNAL, False, R.NEVER, False),
    (404, NotFoundError, C.INVALID, False, R.NEVER, False),
    (413, RequestTooLargeError, C.INVALID, False, R.NEVER, False),
    # 429 and 503 are answered before processing: a create can be retried safely.
    (429, RateLimitError, C.TRANSIENT, True, R.SAFE, False),
    (503, ServiceUnavailableError, C.TRANSIENT, True, R.SAFE, False),
    # A 500/502 may follow a created task: retrying a create blindly may bill twice.
    (500, InternalServerError, C.TRANSIENT, True, R.AMBIGUOUS, False),
    (502, UpstreamError, C.TRANSIENT, True, R.AMBIGUOUS, False),
]

CONTRACT_NEVER_RETRY = {
    "content_policy_violation",
    "invalid_parameters",
    "image_dimension_mismatch",
    "image_processing_error",
    "request_cancelled",
    "resource_not_found",
}
CONTRACT_TRANSIENT = {
    "generation_timeout",
    "quota_exceeded",
    "resource_exhausted",
    "generation_failed_no_content",
    "service_error",
    "service_unavailable",
    "unknown_error",
}


@pytest.mark.parametrize(("status", "cls", "category", "retryable", "create_retry", "alert"), HTTP_TABLE)
def test_http_status_row(
    status: int,
    cls: type[APIStatusError],
    category: FailureCategory,
    retryable: bool,
    create_retry: CreateRetry,
    alert: bool,
) -> None:
    expected = Classification(category, retryable, create_retry, alert)
    assert classify_http_status(status) == expected
    assert STATUS_ERRORS[status] is cls
    # The exception the client raises for that status classifies the same way.
    assert classify_exception(cls(status, "msg")) == expected
    # Evidence: in the gateway's own envelope, a 5xx create created nothing. Only the create's
    # ambiguity changes (to safe), never the category, the retry or the alert.
    enveloped = classify_exception(cls(status, "msg", error_type="upstream_error", from_gateway=True))
    safe = CreateRetry.SAFE if create_retry is CreateRetry.AMBIGUOUS else create_retry
    assert enveloped == Classification(category, retryable, safe, alert)


def test_every_status_the_client_maps_is_in_the_table() -> None:
    assert set(STATUS_ERRORS) == {row[0] for row in HTTP_TABLE}


@pytest.mark.parametrize("status", [504, 520, 599])
def test_unlisted_5xx_is_transient_and_ambiguous(status: int) -> None:
    assert classify_http_status(status) == Classification(C.TRANSIENT, True, R.AMBIGUOUS)


@pytest.mark.parametrize("status", [405, 409, 418, 422])
def test_unlisted_4xx_is_not_retried(status: int) -> None:
    verdict = classify_http_status(status)
    assert verdict.category is C.INVALID and not verdict.retryable and verdict.create_retry is R.NEVER


def test_code_sets_are_exactly_the_contracts_lists() -> None:
    assert POLICY_CODES | CALLER_CODES == CONTRACT_NEVER_RETRY
    assert POLICY_CODES == {"content_policy_violation"}
    assert TRANSIENT_CODES == CONTRACT_TRANSIENT


def test_policy_failure_is_never_retried() -> None:
    verdict = classify_task_error("content_policy_violation")
    assert verdict == Classification(C.POLICY, False, R.NEVER)
    assert "rewrite" in POLICY_GUIDANCE.lower()


@pytest.mark.parametrize("code", sorted(CONTRACT_NEVER_RETRY - {"content_policy_violation"}))
def test_caller_error_codes_are_invalid_and_not_retried(code: str) -> None:
    assert classify_task_error(code) == Classification(C.INVALID, False, R.NEVER)


@pytest.mark.parametrize("code", sorted(CONTRACT_TRANSIENT))
def test_transient_codes_allow_a_new_task(code: str) -> None:
    # retryable means "a new task may succeed"; the failed task itself is never re-sent.
    assert classify_task_error(code) == Classification(C.TRANSIENT, True, R.NEVER)


@pytest.mark.parametrize("code", [None, "", "brand_new_upstream_code"])
def test_unknown_task_error_codes_count_as_transient(code: str | None) -> None:
    assert classify_task_error(code).category is C.TRANSIENT


def test_task_error_codes_are_case_insensitive() -> None:
    assert classify_task_error("CONTENT_POLICY_VIOLATION").category is C.POLICY


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (APIConnectionError("refused"), Classification(C.TRANSIENT, True, R.SAFE)),
        (APITimeoutError("read timeout"), Classification(C.TRANSIENT, True, R.AMBIGUOUS)),
        (ResponseLostError("reset"), Classification(C.TRANSIENT, True, R.AMBIGUOUS)),
        (InvalidRequestError("bad", param="duration"), Classification(C.INVALID, False, R.NEVER)),
        (CancelNotSupportedError("no cancel"), Classification(C.INVALID, False, R.NEVER)),
        (APIStatusError(418, "teapot"), classify_http_status(418)),
        (RuntimeError("bug"), Classification(C.INTERNAL, False, R.AMBIGUOUS)),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_exception_row(exc: BaseException, expected: Classification) -> None:
    assert classify_exception(exc) == expected


@pytest.mark.parametrize("status", [403, 404, 410])
def test_a_result_link_that_answers_gone_has_expired_for_good(status: int) -> None:
    verdict = classify_result_status(status)
    assert verdict is not None
    assert verdict.category is FailureCategory.EXPIRED and not verdict.retryable


@pytest.mark.parametrize("status", [200, 206, 416, 429, 500, 503])
def test_other_result_link_answers_are_no_verdict_on_the_link(status: int) -> None:
    assert classify_result_status(status) is None
