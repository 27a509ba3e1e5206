"""Callback URLs that cannot be forged: the path carries the workflow id and an HMAC of it
under `CALLBACK_SECRET`, minted at create time. The provider documents no callback signature,
so this token is the only thing that tells a real callback from a guessed one."""

from __future__ import annotations

import hashlib
import hmac

CALLBACK_PATH = "/callbacks/gptimage2/"
_MAC_HEX = 32


def _mac(secret: str, workflow_id: str) -> str:
    return hmac.new(secret.encode(), workflow_id.encode(), hashlib.sha256).hexdigest()[:_MAC_HEX]


def mint_callback_token(secret: str, workflow_id: str) -> str:
    if not secret:
        raise ValueError("CALLBACK_SECRET must not be empty")
    return f"{workflow_id}.{_mac(secret, workflow_id)}"


def verify_callback_token(secret: str, token: str) -> str | None:
    """The workflow id the token was minted for, or None if it is forged or malformed."""
    workflow_id, sep, mac = token.rpartition(".")
    if not sep or not workflow_id or len(mac) != _MAC_HEX or not secret:
        return None
    return workflow_id if hmac.compare_digest(mac, _mac(secret, workflow_id)) else None


def callback_url(base_url: str, secret: str, workflow_id: str) -> str:
    return base_url.rstrip("/") + CALLBACK_PATH + mint_callback_token(secret, workflow_id)
