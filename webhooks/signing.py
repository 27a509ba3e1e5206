"""Standard Webhooks signatures (https://www.standardwebhooks.com/), the sender's side.

`webhook-signature` is `v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`,
keyed by the base64 part of a `whsec_` secret. During a rotation an endpoint has two active
secrets and every delivery carries both signatures (space-separated), so a receiver holding
either verifies it.

Secrets made here (admin-created endpoints, the tenant's `notify_url` secret) are derived from
WEBHOOK_SIGNING_KEY and the endpoint's name and version: nothing secret is stored anywhere
(not in workflow history, not in the endpoint registry), and a new version is a new secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24  # what Standard Webhooks asks at least (192 bits)


class BadSecret(ValueError):
    """A secret that is not `whsec_` + base64 of at least MIN_SECRET_BYTES bytes."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: its base64 part, decoded."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        key = b""
    if not secret.startswith(SECRET_PREFIX) or len(key) < MIN_SECRET_BYTES:
        raise BadSecret(
            f"a webhook secret must be {SECRET_PREFIX} + base64 of at least {MIN_SECRET_BYTES} bytes"
        )
    return key


def derive_secret(signing_key: bytes, *scope: str) -> str:
    """The `whsec_` secret of `scope` (tenant, endpoint, version) under WEBHOOK_SIGNING_KEY."""
    digest = hmac.new(signing_key, "\x00".join(scope).encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(digest[:SECRET_BYTES]).decode()


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret_key(secret), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signed_headers(secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, one signature per active secret."""
    if not secrets:
        raise BadSecret("an endpoint needs at least one active secret")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, webhook_id, timestamp, body) for s in secrets),
    }
