"""Network safety for URLs we fetch on a user's behalf (image URLs, result downloads).

Shared by the API (validating requests) and the worker (downloading). Pure: no settings, no
project imports; callers pass the allow-list, resolver and TLS trust they want.

Example::

    async with GuardedClient(allowed_private_hosts=settings.allowed_private_hosts) as client:
        try:
            info = await probe_image(client, url, max_bytes=MAX_IMAGE_BYTES)
        except NetguardError as exc:
            problems.append(exc.reason)
"""

from ._addresses import (
    HostSyntaxError,
    embedded_ipv4,
    ip_problem,
    name_problem,
    normalize_host,
    parse_ip_literal,
    parse_ipv4_loose,
)
from ._errors import FetchFailed, ImageRejected, NetguardError, UnsafeURL
from ._fetch import MAX_REDIRECTS, Fetched, GuardedClient, GuardedSyncClient, Posted
from ._images import SNIFF_BYTES, ImageInfo, probe_image, sniff_image_type
from ._resolve import (
    Resolver,
    SyncResolver,
    checked_addresses,
    resolve_public,
    resolve_public_sync,
    system_resolver,
    system_resolver_sync,
)
from ._urls import MAX_URL_LENGTH, Target, check_url

__all__ = [
    "MAX_REDIRECTS",
    "MAX_URL_LENGTH",
    "SNIFF_BYTES",
    "FetchFailed",
    "Fetched",
    "GuardedClient",
    "GuardedSyncClient",
    "HostSyntaxError",
    "ImageInfo",
    "ImageRejected",
    "NetguardError",
    "Posted",
    "Resolver",
    "SyncResolver",
    "Target",
    "UnsafeURL",
    "check_url",
    "checked_addresses",
    "embedded_ipv4",
    "ip_problem",
    "name_problem",
    "normalize_host",
    "parse_ip_literal",
    "parse_ipv4_loose",
    "probe_image",
    "resolve_public",
    "resolve_public_sync",
    "sniff_image_type",
    "system_resolver",
    "system_resolver_sync",
]
