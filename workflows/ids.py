"""Workflow ids: the idempotency key of a user intent, derived in exactly one place."""

from __future__ import annotations

import hashlib
import re

# A tenant becomes part of workflow ids and object keys: the API checks its configured tenants
# against this at startup.
TENANT_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
TENANT_RE = re.compile(rf"^{TENANT_PATTERN}$")
_ID_RE = re.compile(rf"^gen-({TENANT_PATTERN})-([0-9a-f]{{32}})$")


def generation_workflow_id(tenant: str, user_id: str, idempotency_key: str) -> str:
    """One click = one key = one workflow. The user id and key are hashed, not embedded, so no
    user content reaches the Temporal UI through the id."""
    if not TENANT_RE.match(tenant):
        raise ValueError("tenant must be 1-63 lowercase letters, digits or '-'")
    if not user_id:
        raise ValueError("user_id must not be empty")
    if not idempotency_key:
        raise ValueError("idempotency_key must not be empty")
    digest = hashlib.sha256(f"{tenant}\x00{user_id}\x00{idempotency_key}".encode()).hexdigest()[:32]
    return f"gen-{tenant}-{digest}"


def tenant_of(workflow_id: str) -> str | None:
    """The tenant a generation id belongs to, or None if it is not a generation id."""
    match = _ID_RE.match(workflow_id)
    return match.group(1) if match else None
