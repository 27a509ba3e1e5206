"""Page tokens the API hands out are sealed: Temporal's opaque token plus an HMAC over it and
the query it belongs to (tenant and filters).

Forwarding a client's bytes as a Temporal page token would let garbage reach the visibility
store (it answers UNKNOWN and the SDK retries for seconds) and would let a token minted for one
query be replayed with another. A sealed token that does not verify is a plain 400.
"""

from __future__ import annotations

import hashlib
import hmac

_MAC_HEX = 32


class PageTokens:
    def __init__(self, secret: str) -> None:
        # A key of its own, derived from the server secret, so a page token can never be
        # mistaken for (or help forge) a callback token.
        self._key = hmac.new(secret.encode(), b"api page tokens v1", hashlib.sha256).digest()

    def _mac(self, inner: str, scope: str) -> str:
        return hmac.new(self._key, f"{scope}\x00{inner}".encode(), hashlib.sha256).hexdigest()[:_MAC_HEX]

    def seal(self, inner: str, scope: str) -> str:
        return f"{inner}.{self._mac(inner, scope)}"

    def open(self, token: str, scope: str) -> str | None:
        """The inner token if `token` was sealed for `scope` by this server, else None."""
        inner, sep, mac = token.rpartition(".")
        if not sep or not inner or len(mac) != _MAC_HEX:
            return None
        return inner if hmac.compare_digest(mac, self._mac(inner, scope)) else None
