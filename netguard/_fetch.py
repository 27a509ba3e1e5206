"""An HTTP client that only talks to hosts that passed the checks, hop by hop.

Redirects are followed here, not by httpx, so every Location is checked like the first URL
(a public host answering `302 -> http://169.254.169.254/` is the classic bypass). Each request
connects to the address that was checked, with the original name as Host and TLS SNI, so DNS
cannot answer differently between the check and the connection (rebinding).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin

import h11
import httpx

from ._addresses import IPAddress
from ._errors import FetchFailed, UnsafeURL
from ._resolve import (
    Resolver,
    SyncResolver,
    resolve_public,
    resolve_public_sync,
    system_resolver,
    system_resolver_sync,
)
from ._urls import Target, check_url

MAX_REDIRECTS = 3
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# A POST's connection is kept this long for the next POST to the same host name (a webhook
# receiver gets every event of a burst): well inside any server's idle timeout, so a server
# rarely closes one just as a POST goes out on it (and then the POST is sent again on a new
# connection: see `GuardedClient.post`).
POST_KEEPALIVE_SECONDS = 1.0
POST_KEPT_PER_HOST = 16

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class Fetched:
    """The final response of a guarded request and the URL (after redirects) it came from."""

    response: httpx.Response
    url: str
    redirects: int


@dataclass(frozen=True)
class Posted:
    """The answer to `GuardedClient.post`: its status and at most `max_bytes` of its body."""

    status_code: int
    head: bytes


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
        self._timeout = timeout
        self._tls = verify if isinstance(verify, ssl.SSLContext) else _tls_context(verify)
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
        # POST connections kept for the next POST, by (scheme, host name, port), oldest first.
        self._idle: dict[tuple[str, str, int], list[tuple[_Connection, float]]] = {}

    async def __aenter__(self) -> GuardedClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for (_, writer), _ in idle:
                writer.close()
        self._idle.clear()
        await self._http.aclose()

    def check(self, url: str) -> Target:
        return check_url(url, allowed_private_hosts=self.allowed_private_hosts, schemes=self.schemes)

    @asynccontextmanager
    async def stream(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Fetched]:
        """The response to `url` after at most `max_redirects` checked redirects; the body is
        not read yet, so the caller decides how much of it to take."""
        current = url
        for hop in range(self.max_redirects + 1):
            target = self.check(current)
            addresses = await resolve_public(target, self.resolver)
            response = await self._send(method, target, addresses, headers or {})
            location = _redirect_location(current, response)
            if location is not None:
                await response.aclose()
                current = location
                continue
            try:
                yield Fetched(response=response, url=current, redirects=hop)
            finally:
                await response.aclose()
            return
        raise _too_many_redirects(self.max_redirects)

    async def post(self, url: str, *, headers: Mapping[str, str], content: bytes, max_bytes: int) -> Posted:
        """One POST of `content` to `url`, checked and pinned as `stream`'s requests are (the
        connection goes to a checked address, the URL's name is the Host, the TLS SNI and what
        the certificate is verified against); a redirect is the answer, never followed; at most
        `max_bytes` of the body are read. HTTP/1.1 by h11 on an asyncio stream: a webhook
        sender's exchange, for a fraction of the CPU httpx's layers cost.

        The connection is kept for the next POST to the same host name, port and scheme, for
        POST_KEEPALIVE_SECONDS (never for another name: it was verified for this one). A kept
        connection that fails (its server closed it meanwhile) is dropped and the POST sent on
        a new one: a receiver may then see it twice, which a webhook's stable id makes harmless."""
        target = self.check(url)
        key = (target.scheme, target.host, target.port)
        async with asyncio.timeout(self._timeout):
            while (kept := self._kept(key)) is not None:
                try:
                    return await self._exchange_on(kept, key, target, headers, content, max_bytes)
                except FetchFailed:
                    continue
            addresses = await resolve_public(target, self.resolver)
            last_error: OSError | None = None
            for address in addresses:
                tls = self._tls if target.scheme == "https" else None
                try:
                    connection = await asyncio.open_connection(
                        str(address),
                        target.port,
                        ssl=tls,
                        # The name to verify (an IP literal's is the address: asyncio's default).
                        server_hostname=target.host if tls and target.ip is None else None,
                    )
                except OSError as exc:  # refused, unreachable, or TLS (the certificate included)
                    last_error = exc
                    continue
                return await self._exchange_on(connection, key, target, headers, content, max_bytes)
        raise _unreachable(target, last_error)

    def _kept(self, key: tuple[str, str, int]) -> _Connection | None:
        """The most recently used kept connection for `key` still in its keep-alive time;
        the expired ones (of every host) are closed."""
        now = asyncio.get_running_loop().time()
        for host, idle in list(self._idle.items()):
            while idle and (now - idle[0][1] > POST_KEEPALIVE_SECONDS or idle[0][0][1].is_closing()):
                idle.pop(0)[0][1].close()
            if not idle:
                del self._idle[host]
        mine = self._idle.get(key)
        return mine.pop()[0] if mine else None

    async def _exchange_on(
        self,
        connection: _Connection,
        key: tuple[str, str, int],
        target: Target,
        headers: Mapping[str, str],
        content: bytes,
        max_bytes: int,
    ) -> Posted:
        reader, writer = connection
        reusable = False
        try:
            posted, reusable = await _exchange(reader, writer, target, headers, content, max_bytes)
            return posted
        except (OSError, h11.ProtocolError) as exc:
            raise _unreadable(target, exc) from exc
        finally:
            if reusable and len(self._idle.get(key, ())) < POST_KEPT_PER_HOST:
                self._idle.setdefault(key, []).append((connection, asyncio.get_running_loop().time()))
            else:
                writer.close()

    async def _send(
        self, method: str, target: Target, addresses: list[IPAddress], headers: Mapping[str, str]
    ) -> httpx.Response:
        last_error: httpx.HTTPError | None = None
        # Try each checked address in turn, as a resolver-driven client would (IPv6 first
        # answers are common and often unreachable).
        for address in addresses:
            try:
                return await self._http.send(
                    _pinned(self._http, method, target, address, headers), stream=True
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_error = exc
            except httpx.HTTPError as exc:
                raise _unreadable(target, exc) from exc
        raise _unreachable(target, last_error)


class GuardedSyncClient:
    """The blocking twin of `GuardedClient`, for code that runs in threads (the worker's
    re-host copies): the same checks on every hop and the same pinning to the checked address.

    Unlike `GuardedClient` it keeps connections alive (a clip from a host fetched moments ago
    skips the TLS handshake), which is safe because each host name gets its own pool: a
    connection verified for one name is never reused for another name on the same address.
    Thread-safe, as httpx clients are.

    Example::

        with GuardedSyncClient(only_hosts=["cdn.example.net"]) as client, client.stream(url) as got:
            for chunk in got.response.iter_bytes():
                ...
    """

    def __init__(
        self,
        *,
        allowed_private_hosts: Collection[str] = (),
        only_hosts: Collection[str] | None = None,
        resolver: SyncResolver = system_resolver_sync,
        verify: ssl.SSLContext | bool = True,
        timeout: httpx.Timeout | float = 10.0,
        max_redirects: int = MAX_REDIRECTS,
        schemes: Collection[str] = ("https",),
        keepalive_seconds: float = 5.0,
        max_pooled_hosts: int = 32,
    ) -> None:
        self.allowed_private_hosts = frozenset(allowed_private_hosts)
        self.only_hosts = frozenset(only_hosts) if only_hosts is not None else None
        self.resolver = resolver
        self.max_redirects = max_redirects
        self.schemes = tuple(schemes)
        self._verify, self._timeout = verify, timeout
        self._limits = httpx.Limits(max_keepalive_connections=8, keepalive_expiry=keepalive_seconds)
        self._max_pooled_hosts = max_pooled_hosts
        self._pools: OrderedDict[str, httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def __enter__(self) -> GuardedSyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            pool.close()

    def check(self, url: str) -> Target:
        return check_url(
            url,
            allowed_private_hosts=self.allowed_private_hosts,
            schemes=self.schemes,
            only_hosts=self.only_hosts,
        )

    @contextmanager
    def stream(
        self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None
    ) -> Iterator[Fetched]:
        """As `GuardedClient.stream`, blocking."""
        current = url
        for hop in range(self.max_redirects + 1):
            target = self.check(current)
            addresses = resolve_public_sync(target, self.resolver)
            response = self._send(method, target, addresses, headers or {})
            location = _redirect_location(current, response)
            if location is not None:
                response.close()
                current = location
                continue
            try:
                yield Fetched(response=response, url=current, redirects=hop)
            finally:
                response.close()
            return
        raise _too_many_redirects(self.max_redirects)

    def _pool(self, host: str) -> httpx.Client:
        with self._lock:
            pool = self._pools.get(host)
            if pool is None:
                # Proxies from the environment would resolve names themselves, undoing the checks.
                pool = httpx.Client(
                    verify=self._verify, timeout=self._timeout, limits=self._limits, trust_env=False
                )
                self._pools[host] = pool
                if len(self._pools) > self._max_pooled_hosts:
                    # Not closed here: another thread may be streaming from it. Its idle
                    # connections close when it is collected.
                    self._pools.popitem(last=False)
            else:
                self._pools.move_to_end(host)
            return pool

    def _send(
        self, method: str, target: Target, addresses: list[IPAddress], headers: Mapping[str, str]
    ) -> httpx.Response:
        pool = self._pool(target.host)
        last_error: httpx.HTTPError | None = None
        for address in addresses:
            try:
                return pool.send(_pinned(pool, method, target, address, headers), stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_error = exc
            except httpx.HTTPError as exc:
                raise _unreadable(target, exc) from exc
        raise _unreachable(target, last_error)


def _pinned(
    http: httpx.Client | httpx.AsyncClient,
    method: str,
    target: Target,
    address: IPAddress,
    headers: Mapping[str, str],
) -> httpx.Request:
    """A request to the checked `address`, with the URL's name as Host and TLS SNI."""
    extensions = {} if target.ip is not None else {"sni_hostname": target.host}
    return http.build_request(
        method,
        target.url_for(address),
        headers={**headers, "Host": target.authority},
        extensions=extensions,
    )


def _tls_context(verify: bool) -> ssl.SSLContext:
    if verify:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


RECEIVE_BYTES = 65536


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    target: Target,
    headers: Mapping[str, str],
    content: bytes,
    max_bytes: int,
) -> tuple[Posted, bool]:
    """The POST's answer, and whether the connection can carry another request (the whole
    answer was read and neither side asked to close)."""
    http = h11.Connection(h11.CLIENT)
    fields = [("Host", target.authority), ("Content-Length", str(len(content)))]
    request = h11.Request(method="POST", target=target.path_and_query, headers=[*fields, *headers.items()])
    writer.write(http.send(request) + http.send(h11.Data(data=content)) + http.send(h11.EndOfMessage()))
    await writer.drain()
    status: int | None = None
    kept = bytearray()
    while len(kept) < max_bytes:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(await reader.read(RECEIVE_BYTES))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            kept += event.data[: max_bytes - len(kept)]
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    if status is None:  # closed before answering
        raise h11.RemoteProtocolError("no response")
    return Posted(status, bytes(kept)), http.our_state is h11.DONE and http.their_state is h11.DONE


def _redirect_location(current: str, response: httpx.Response) -> str | None:
    location = response.headers.get("location")
    if response.status_code in _REDIRECT_STATUSES and location:
        return urljoin(current, location)
    return None


def _too_many_redirects(limit: int) -> UnsafeURL:
    return UnsafeURL(f"URL redirects more than {limit} times")


def _unreadable(target: Target, exc: Exception) -> FetchFailed:
    return FetchFailed(f"URL host {target.host} could not be read ({type(exc).__name__})")


def _unreachable(target: Target, last_error: Exception | None) -> FetchFailed:
    return FetchFailed(
        f"URL host {target.host} could not be reached ({type(last_error).__name__ if last_error else 'no address'})"
    )
