"""Tenants by API key: `Authorization: Bearer <key>`.

Every configured key is compared, in constant time, whatever matches first, so response
timing says nothing about which prefix of which key was right. Keys are never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from workflows.ids import TENANT_RE


class TenantKeys:
    def __init__(self, keys: Mapping[str, str]) -> None:
        """`keys` maps API key -> tenant (as `Settings.tenant_keys()` returns it)."""
        for tenant in keys.values():
            if not TENANT_RE.match(tenant):
                # Tenants become part of workflow ids; fail at startup, not on a request.
                raise ValueError(f"tenant {tenant!r} in API_KEYS must be lowercase letters, digits or '-'")
        self._keys = [(key.encode(), tenant) for key, tenant in keys.items()]

    def tenant_for(self, presented: str) -> str | None:
        candidate = presented.encode("utf-8", "surrogateescape")
        found: str | None = None
        for key, tenant in self._keys:
            if hmac.compare_digest(candidate, key) and found is None:
                found = tenant
        return found
