"""An HTTP client that only talks to hosts that passed the checks, hop by hop.

Redirects are followed here, not by httpx, so every Location is checked like the first URL
(a public host answering `302 -> http://169.254.169.254/` is the classic bypass). Each request
connects to the address that was checked, with the original name as Host and TLS SNI, so DNS
cannot answer differently between the check and the connection (rebinding).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from ._addresses import IPAddress
from ._errors import FetchFailed, UnsafeURL
from ._resolve import Resolver, resolve_public, system_resolver
from ._urls import Target, check_url

MAX_REDIRECTS = 3
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Fetched:
    """The final response of a guarded request and the URL (after redirects) it came from."""

    response: httpx.Response
    url: str
    redirects: int


class GuardedClient:
    """Fetches only public HTTPS URLs (plus the operator's allow-listed hosts).

    Example::

        async with GuardedClient() as client, client.stream(url, headers={"Range": "bytes=0-31"}) as got:
            head = await got.response.aread()
    """

    def __init__(
        self,
        *,
        allowed_private_hosts: Collection[str] = (),
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 10.0,
        max_redirects: int = MAX_REDIRECTS,
        schemes: Collection[str] = ("https",),
    ) -> None:
        self.allowed_private_hosts = frozenset(allowed_private_hosts)
        self.resolver = resolver
        self.max_redirects = max_redirects
        self.schemes = tuple(schemes)
        self._http = httpx.AsyncClient(
            verify=verify,
            timeout=timeout,
            follow_redirects=False,
            # Proxies from the environment would resolve names themselves, undoing the checks.
            trust_env=False,
            # A pooled TLS connection was verified for one name; reusing it for another name on
            # the same address would skip that name's certificate check.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def __aenter__(self) -> GuardedClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def check(self, url: str) -> Target:
        return check_url(url, allowed_private_hosts=self.allowed_private_hosts, schemes=self.schemes)

    @asynccontextmanager
    async def stream(
        self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[Fetched]:
        """The response to `url` after at most `max_redirects` checked redirects; the body is
        not read yet, so the caller decides how much of it to take."""
        current = url
        for hop in range(self.max_redirects + 1):
            target = self.check(current)
            addresses = await resolve_public(target, self.resolver)
            response = await self._send(method, target, addresses, headers or {})
            location = response.headers.get("location")
            if response.status_code in _REDIRECT_STATUSES and location:
                await response.aclose()
                current = urljoin(current, location)
                continue
            try:
                yield Fetched(response=response, url=current, redirects=hop)
            finally:
                await response.aclose()
            return
        raise UnsafeURL(f"URL redirects more than {self.max_redirects} times")

    async def _send(
        self, method: str, target: Target, addresses: list[IPAddress], headers: Mapping[str, str]
    ) -> httpx.Response:
        extensions = {} if target.ip is not None else {"sni_hostname": target.host}
        last_error: httpx.HTTPError | None = None
        # Try each checked address in turn, as a resolver-driven client would (IPv6 first
        # answers are common and often unreachable).
        for address in addresses:
            request = self._http.build_request(
                method,
                target.url_for(address),
                headers={**headers, "Host": target.authority},
                extensions=extensions,
            )
            try:
                return await self._http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_error = exc
            except httpx.HTTPError as exc:
                raise FetchFailed(f"URL host {target.host} could not be read ({type(exc).__name__})") from exc
        raise FetchFailed(
            f"URL host {target.host} could not be reached ({type(last_error).__name__ if last_error else 'no address'})"
        )
