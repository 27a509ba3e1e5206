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


async def system_resolver(host: str, port: int) -> list[str]:
    """The platform resolver (getaddrinfo in a thread), unique addresses in answer order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
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
    answers = await resolver(target.host, target.port)
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
