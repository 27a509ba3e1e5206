"""Async client for the GPTImage2 task API.

Every transport or HTTP failure becomes one of the typed errors in `_exceptions`, chosen so
that `_classify` can tell whether the request may have reached the provider: that is what
decides if a create can be retried without paying twice.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from pydantic import ValidationError
from yarl import URL

from ._exceptions import (
    STATUS_ERRORS,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CancelNotSupportedError,
    InvalidRequestError,
    ResponseLostError,
)
from ._models import CreateVideoRequest, Credits, CreditsResponse, ErrorEnvelope, ProviderTask

logger = logging.getLogger("gptimage2")

DEFAULT_BASE_URL = "https://api.gptimage2"
# Connect failures (a free connection included) are cheap to detect and safe to retry; reads
# wait for a busy gateway.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5.0, sock_connect=5.0, sock_read=30.0)
# Requests reuse warm connections (a create skips a TCP and TLS handshake, two round trips to a
# remote provider), but only for a second after the last response: well inside any server's
# idle timeout (uvicorn's and Apache's are 5 s, load balancers' a minute), so a server never
# closes a connection just as a create goes out on it. That race would look like "connection
# lost after sending", which for a create means "may have billed" and a long reconciliation.
KEEPALIVE_SECONDS = 1.0


@dataclass(frozen=True)
class _Answer:
    """An HTTP response, read whole."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]  # case-insensitive
    content: bytes


class GPTImage2Client:
    """One object per process (it pools connections). Use as `async with GPTImage2Client(...)`.

    On aiohttp: with a hundred requests in flight (a burst of generations) httpx spent 0.8-1 ms
    of CPU on each, aiohttp 0.1-0.3 (`bench/http_clients.py`)."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._timeout = timeout
        self._verify = verify
        self._proxy, self._proxy_headers = _environment_proxy(self.base_url)
        self._http: aiohttp.ClientSession | None = None  # made in the event loop, on first use

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._verify, keepalive_timeout=KEEPALIVE_SECONDS),
            )
        return self._http

    def __repr__(self) -> str:  # the key must never reach a log line or a traceback
        return f"GPTImage2Client(base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def create_task(self, request: CreateVideoRequest | dict[str, Any]) -> ProviderTask:
        """`POST /v1/videos/generations`. Not idempotent: see `classify_exception(...).create_retry`."""
        if not isinstance(request, CreateVideoRequest):
            try:
                request = CreateVideoRequest.model_validate(request)
            except ValidationError as exc:
                first = exc.errors()[0]
                param = ".".join(str(p) for p in first["loc"]) or None
                raise InvalidRequestError(first["msg"], param=param) from exc
        # Each model takes its own wire fields (audio as a bool or "on"/"off", images as a list or
        # start/end frames, `n` for Veo): gptimage2.profiles maps the neutral request.
        return await self._task_call("POST", "/v1/videos/generations", json=request.wire_body())

    async def get_task(self, task_id: str) -> ProviderTask:
        """`GET /v1/tasks/{task_id}`: the source of truth, re-read before any final decision."""
        return await self._task_call("GET", f"/v1/tasks/{_task_path(task_id)}")

    async def cancel_task(self, task_id: str) -> ProviderTask:
        """`POST /v1/tasks/{task_id}/cancel`. The integration guide documents `task_info.can_cancel`
        but no cancel route; the simulator serves this one (docs/provider-contract.md, "Routes"). A provider without it (404/405), or a task
        past cancelling (409), raises `CancelNotSupportedError`."""
        try:
            return await self._task_call("POST", f"/v1/tasks/{_task_path(task_id)}/cancel")
        except APIStatusError as exc:
            if exc.status_code in (404, 405, 409):
                raise CancelNotSupportedError(exc.message) from exc
            raise

    async def get_credits(self) -> Credits:
        """`GET /v1/credits`: the key's used and remaining credits (the gateway's account API)."""
        response = await self._send("GET", "/v1/credits")
        try:
            return CreditsResponse.model_validate_json(response.content).data.token
        except ValidationError as exc:
            raise ResponseLostError(f"GET /v1/credits: unparseable answer: {exc.errors()[0]['msg']}") from exc

    async def _task_call(self, method: str, path: str, **kwargs: Any) -> ProviderTask:
        response = await self._send(method, path, **kwargs)
        try:
            return ProviderTask.model_validate_json(response.content)
        except ValidationError as exc:
            raise ResponseLostError(
                f"{method} {path}: unparseable task object: {exc.errors()[0]['msg']}"
            ) from exc

    async def _send(self, method: str, path: str, json: Any = None) -> _Answer:
        started = time.perf_counter()
        try:
            async with self._session().request(
                method,
                self.base_url + path,
                json=json,
                allow_redirects=False,
                # Per request, never the session's: aiohttp sends a session's headers to a
                # proxy too, and would hand it the API key as its Proxy-Authorization.
                headers=self._headers,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
            ) as response:
                answer = _Answer(
                    response.status, response.reason or "", response.headers, await response.read()
                )
        except (
            aiohttp.ConnectionTimeoutError,
            aiohttp.ClientConnectorError,
            aiohttp.InvalidURL,
            aiohttp.NonHttpUrlClientError,
            aiohttp.ClientHttpProxyError,
        ) as exc:
            # Before anything was sent: no connection (refused, DNS, TLS, proxy) or none free, a
            # bad base URL or scheme, or a proxy that refused the tunnel.
            raise APIConnectionError(f"{method} {path}: could not connect: {exc!r}") from exc
        except TimeoutError as exc:  # aiohttp.SocketTimeoutError (no answer in sock_read) is one
            raise APITimeoutError(
                f"{method} {path}: no answer in time, the request may have arrived"
            ) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise ResponseLostError(f"{method} {path}: connection lost after sending: {exc!r}") from exc
        except aiohttp.ClientError as exc:
            # Any other transport failure (a malformed answer...): it may have arrived, so it is
            # ambiguous, never raw.
            raise ResponseLostError(f"{method} {path}: transport failed: {exc!r}") from exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.debug("%s %s -> %s in %.0f ms", method, path, answer.status_code, elapsed_ms)
        if answer.status_code >= 400:
            raise _status_error(answer)
        return answer


def _environment_proxy(base_url: str) -> tuple[URL | None, dict[str, str] | None]:
    """The environment's proxy for the provider, as aiohttp's `trust_env` chooses it
    (HTTPS_PROXY / HTTP_PROXY, NO_PROXY, the proxy's credentials in ~/.netrc), read once: with
    `trust_env` aiohttp reads the environment and ~/.netrc again for every request, in two hops
    to a thread. The provider's own credentials are the API key, never ~/.netrc's."""
    try:
        proxy, credentials = get_env_proxy_for_url(URL(base_url))
    except LookupError:  # no proxy for this scheme, or NO_PROXY names the host
        return None, None
    return proxy, ({"Proxy-Authorization": credentials.encode()} if credentials else None)


def _task_path(task_id: str) -> str:
    if not task_id or "/" in task_id or task_id in (".", ".."):
        raise InvalidRequestError(f"invalid task id {task_id!r}", param="task_id")
    return task_id


def _status_error(response: _Answer) -> APIStatusError:
    message, error_type, param = response.reason_phrase or "error", None, None
    from_gateway = False
    try:
        envelope = ErrorEnvelope.model_validate_json(response.content)
        message, error_type, param = (
            envelope.error.message or message,
            envelope.error.type,
            envelope.error.param,
        )
        # Well-formed: the contract's envelope with its error type, which only the gateway writes.
        from_gateway = bool(error_type)
    except ValidationError:
        pass
    retry_after = _retry_after_seconds(response.headers.get("retry-after"))
    cls = STATUS_ERRORS.get(response.status_code, APIStatusError)
    return cls(
        response.status_code,
        message,
        error_type=error_type,
        param=param,
        retry_after=retry_after,
        from_gateway=from_gateway,
    )


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: callers fall back to their own backoff
