"""Which IP addresses and host names may be reached on a user's behalf.

The rule is "globally routable unicast only". Everything else (loopback, private, link-local
where cloud metadata lives, CGNAT, multicast, reserved, and IPv6 forms that embed one of those
IPv4 addresses) is refused, because an image URL is fetched from inside our network.

Host spellings are parsed the way the C library's `inet_aton` (and so `getaddrinfo`, curl and
browsers) read them: `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` all mean 127.0.0.1. A
checker that only knew dotted quads would wave those through to a resolver that does not.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that never leave the machine or the cloud network, whatever DNS says about them.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".arpa")
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "metadata", "metadata.google.internal"})
# RFC 1123 labels; IDNs must arrive as punycode so every byte of the name is visible here.
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NUMERIC_PART_RE = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


class HostSyntaxError(ValueError):
    """The host is not a name or address we are willing to interpret."""


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address `host` denotes under `inet_aton` rules, or None if it is not numeric.

    Raises HostSyntaxError for a host that looks numeric but is out of range (`256.1.1.1`):
    resolvers disagree on those, so the only safe answer is no.
    """
    name = host.rstrip(".")  # a trailing dot is still an address to getaddrinfo
    parts = name.split(".")
    if not name or len(parts) > 4 or not all(_NUMERIC_PART_RE.match(part) for part in parts):
        return None
    values: list[int] = []
    for part in parts:
        if part.startswith("0x"):
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not all(c in "01234567" for c in part):
                raise HostSyntaxError(f"{host!r} is not a valid IPv4 address")
            values.append(int(part, 8))
        else:
            values.append(int(part))
    # The last part fills every byte the earlier ones did not: a.b.c.d, a.b.cd, a.bcd, abcd.
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (5 - len(values))):
        raise HostSyntaxError(f"{host!r} is not a valid IPv4 address")
    number = 0
    for value in leading:
        number = (number << 8) | value
    number = (number << (8 * (5 - len(values)))) | last
    return ipaddress.IPv4Address(number)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host denotes if it is an IP literal in any spelling, else None."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        inner = name[1:-1]
        if "%" in inner:
            # Zone ids only exist for link-local addresses, which are refused anyway.
            raise HostSyntaxError("IPv6 zone identifiers are not allowed")
        try:
            return ipaddress.IPv6Address(inner)
        except ValueError as exc:
            raise HostSyntaxError(f"{host!r} is not a valid IPv6 address") from exc
    if ":" in name:
        try:
            return ipaddress.IPv6Address(name)
        except ValueError as exc:
            raise HostSyntaxError(f"{host!r} is not a valid host") from exc
    return parse_ipv4_loose(name)


def _ipv4_problem(ip: ipaddress.IPv4Address) -> str | None:
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved address"
    return None


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any.

    Each of these can make a dual stack, a tunnel or a translator deliver the packet to that
    IPv4 address, so it must pass the IPv4 rules too.
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def ip_problem(ip: IPAddress) -> str | None:
    """Why `ip` must not be contacted on a user's behalf, or None if it is public unicast."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_problem(ip)
    if ip.scope_id:
        return "a scoped (link-local) IPv6 address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip in _IPV4_COMPATIBLE:
        # Deprecated since 2006 (RFC 4291); some stacks still route ::a.b.c.d to a.b.c.d.
        return "an IPv4-compatible IPv6 address"
    inner = embedded_ipv4(ip)
    if inner is not None:
        problem = _ipv4_problem(inner)
        return f"an IPv6 address embedding {inner}, {problem}" if problem else None
    if ip.is_link_local or ip.is_site_local:
        return "a link-local address"
    if ip in _NAT64_LOCAL:
        return "a local-use NAT64 address"
    if ip in _UNIQUE_LOCAL:
        return "a unique-local (private) address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a reserved address"
    return None


def normalize_host(host: str) -> str:
    """Lower-case, no trailing dot, IP literals in canonical form (`[::1]` -> `::1`)."""
    ip = parse_ip_literal(host)
    if ip is not None:
        return str(ip)
    return host.strip().lower().rstrip(".")


def name_problem(host: str) -> str | None:
    """Why a DNS name must not be used, judged by the name alone (before any lookup)."""
    name = host.lower().rstrip(".")
    if name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES):
        return "a local or cloud-internal name"
    labels = name.split(".")
    if _NUMERIC_PART_RE.match(labels[-1]):
        # A numeric last label makes URL parsers read the host as IPv4 (WHATWG); one that
        # did not parse as IPv4 here is ambiguous, so it is refused.
        return "not a valid host"
    if not all(_LABEL_RE.match(label) for label in labels):
        return "not a valid DNS name (use punycode for international names)"
    if len(labels) < 2:
        # Single-label names resolve through search domains and /etc/hosts: always internal.
        return "not a fully qualified domain name"
    return None
