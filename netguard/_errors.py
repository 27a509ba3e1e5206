"""Why a URL was refused, as messages safe to show the caller (they name the host, never the
query string, which may carry a signature)."""

from __future__ import annotations


class NetguardError(Exception):
    """A URL may not or could not be used. `reason` is fit for a 422 message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsafeURL(NetguardError):
    """Refused by its form or by where it points (SSRF protection); never worth a retry."""


class FetchFailed(NetguardError):
    """A permitted URL that could not be read: no DNS answer, refused connection, HTTP error."""


class ImageRejected(NetguardError):
    """Reachable, but not an image the provider accepts (too large, not jpg/png/webp)."""
