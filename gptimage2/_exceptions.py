"""Typed errors of the GPTImage2 client. Classification (retry or not) lives in `_classify`."""

from __future__ import annotations


class GPTImage2Error(Exception):
    """Base of every error the client raises."""


class InvalidRequestError(GPTImage2Error):
    """The request broke the contract before it was sent; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class APIConnectionError(GPTImage2Error):
    """No connection was made: the request certainly never reached the provider."""


class APITimeoutError(GPTImage2Error):
    """The provider did not answer in time after the request was sent: it may have arrived."""


class ResponseLostError(GPTImage2Error):
    """The connection broke after the request was sent (reset, truncated or unparseable answer)."""


class APIStatusError(GPTImage2Error):
    """An HTTP error status. `from_gateway`: the body was the contract's error envelope, so the
    gateway itself answered (and, for a create, created nothing); a bare status (an HTML or
    empty body from a proxy or load balancer in front of it) says nothing about what happened
    behind."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        from_gateway: bool = False,
    ) -> None:
        super().__init__(f"HTTP {status_code} {error_type or ''}: {message}".replace("  ", " "))
        self.status_code = status_code
        self.message = message
        self.error_type = error_type
        self.param = param
        self.retry_after = retry_after
        self.from_gateway = from_gateway


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class InsufficientQuotaError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class RequestTooLargeError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class UpstreamError(APIStatusError):
    pass


class ServiceUnavailableError(APIStatusError):
    pass


class CancelNotSupportedError(GPTImage2Error):
    """The provider offers no cancel for this task (endpoint absent or task not cancellable)."""


STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientQuotaError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    429: RateLimitError,
    500: InternalServerError,
    502: UpstreamError,
    503: ServiceUnavailableError,
}
