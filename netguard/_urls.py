"""Static checks of a URL before anything touches the network."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from ._addresses import HostSyntaxError, IPAddress, ip_problem, name_problem, normalize_host, parse_ip_literal
from ._errors import UnsafeURL

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"https": 443, "http": 80}
# Control characters, spaces and backslashes: parsers disagree about them (a browser reads
# `https://a.com\@evil` differently from urllib), and a disagreement is an SSRF waiting to happen.
_FORBIDDEN_CHARS_RE = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class Target:
    """One hop of a request, checked: where to connect and what to send."""

    url: str
    scheme: str
    host: str  # normalized: lower case, IP literals canonical and without brackets
    port: int
    ip: IPAddress | None  # set when the host is an IP literal (in any spelling)
    allowed_private: bool  # the host is on the operator's allow-list
    authority: str  # Host header value
    path_and_query: str

    def url_for(self, address: IPAddress) -> str:
        """The URL with the host replaced by an address already checked, so the connection
        goes exactly where the check looked (no second DNS lookup to rebind)."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.path_and_query}"


def check_url(
    url: str,
    *,
    allowed_private_hosts: Collection[str] = (),
    schemes: Collection[str] = ("https",),
    only_hosts: Collection[str] | None = None,
) -> Target:
    """A Target for `url`, or UnsafeURL naming the problem.

    Catches everything decidable from the text: scheme, credentials, odd characters, IP
    literals in any spelling, and local names. Names still need `resolve_public`. With
    `only_hosts`, a host not in it is refused whatever it resolves to.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"URL is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_CHARS_RE.search(url):
        raise UnsafeURL("URL contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. unbalanced IPv6 brackets
        raise UnsafeURL("URL is not valid") from exc
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise UnsafeURL(f"URL must use {' or '.join(s.upper() for s in schemes)}")
    if "@" in parts.netloc:
        raise UnsafeURL("URL must not contain credentials (user@host)")
    raw_host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    if not parts.hostname or not raw_host:
        raise UnsafeURL("URL has no host")
    try:
        port = parts.port if parts.port is not None else _DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise UnsafeURL("URL has an invalid port") from exc
    if port == 0:
        raise UnsafeURL("URL has an invalid port")
    if "%" in parts.netloc:
        raise UnsafeURL("URL host must not be percent-encoded")
    try:
        ip = parse_ip_literal(raw_host)
        host = normalize_host(raw_host)
    except HostSyntaxError as exc:
        raise UnsafeURL(f"URL host is not valid: {exc}") from exc
    if ip is None and raw_host.startswith("["):
        raise UnsafeURL("URL host is not valid")

    if only_hosts is not None and host not in {normalize_host(h) for h in only_hosts}:
        raise UnsafeURL(f"URL host {host} is not on the allow-list")
    allowed = host in {normalize_host(h) for h in allowed_private_hosts}
    if not allowed:
        problem = ip_problem(ip) if ip is not None else name_problem(host)
        if problem:
            raise UnsafeURL(f"URL host {host} is {problem}")

    path_and_query = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rsplit("@", 1)[-1]
    return Target(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        ip=ip,
        allowed_private=allowed,
        authority=authority,
        path_and_query=path_and_query,
    )
