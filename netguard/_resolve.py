"""DNS resolution with the rule that every answer must be public.

All addresses are checked, not just the first: a name with one public and one private record
would otherwise be a coin toss between a good fetch and an SSRF.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

from ._addresses import IPAddress, ip_problem
from ._errors import FetchFailed, UnsafeURL
from ._urls import Target

# host, port -> address strings. Injectable so tests can make a name resolve to anything
# without editing /etc/hosts or reaching real DNS.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
# The same for blocking callers (the worker's re-host threads).
SyncResolver = Callable[[str, int], Sequence[str]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The platform resolver (getaddrinfo in a thread), unique addresses in answer order."""
    return await asyncio.to_thread(system_resolver_sync, host, port)


def system_resolver_sync(host: str, port: int) -> list[str]:
    """The platform resolver, blocking; unique addresses in answer order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise FetchFailed(f"URL host {host} does not resolve") from exc
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


async def resolve_public(target: Target, resolver: Resolver = system_resolver) -> list[IPAddress]:
    """The addresses to connect to for `target`; UnsafeURL if any of them is not public."""
    if target.ip is not None:
        return [target.ip]
    return checked_addresses(target, await resolver(target.host, target.port))


def resolve_public_sync(target: Target, resolver: SyncResolver = system_resolver_sync) -> list[IPAddress]:
    """`resolve_public` for blocking callers."""
    if target.ip is not None:
        return [target.ip]
    return checked_addresses(target, resolver(target.host, target.port))


def checked_addresses(target: Target, answers: Sequence[str]) -> list[IPAddress]:
    """The resolver's `answers` for `target` as addresses, every one of them public unless the
    host is allow-listed."""
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError as exc:
            raise FetchFailed(f"URL host {target.host} resolved to something that is not an address") from exc
        if not target.allowed_private:
            problem = ip_problem(address)
            if problem:
                raise UnsafeURL(f"URL host {target.host} resolves to {address}, {problem}")
        addresses.append(address)
    if not addresses:
        raise FetchFailed(f"URL host {target.host} does not resolve")
    return addresses
