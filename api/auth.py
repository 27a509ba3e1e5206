"""Tenants by API key: `Authorization: Bearer <key>`.

Every configured key is compared, in constant time, whatever matches first, so response
timing says nothing about which prefix of which key was right. Keys are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from workflows.ids import TENANT_RE

from .errors import ApiError


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


class OperatorKey:
    """An operator's key, read-all or admin access across tenants: OPS_API_KEY (the codec
    endpoint, the ops page) or ADMIN_API_KEY (budgets, webhook endpoints). `Authorization:
    Bearer <key>`, or Basic with the key as the password (any user name), which a browser asks
    for by itself. Unset, everyone is refused. One check, in constant time, for every such route."""

    def __init__(self, key: SecretStr | None, variable: str, what: str) -> None:
        """`variable` names the setting, `what` the routes it opens (both in refusals)."""
        self._key = key.get_secret_value().encode() if key else None
        self._variable = variable
        self._what = what

    def check(self, authorization: str | None, *, challenge: str = "Bearer") -> None:
        """Returns if `authorization` (the header) presents the key, else raises ApiError:
        403 when no key is configured, 401 with `challenge` as WWW-Authenticate otherwise."""
        if self._key is None:
            raise ApiError(403, "forbidden", f"{self._what} is off: {self._variable} is not set")
        if not hmac.compare_digest(_presented(authorization or ""), self._key):
            raise ApiError(
                401,
                "authentication_error",
                f"missing or invalid key (Authorization: Bearer <{self._variable}>)",
                headers={"WWW-Authenticate": challenge},
            )


def ops_key(key: SecretStr | None, what: str) -> OperatorKey:
    return OperatorKey(key, "OPS_API_KEY", what)


def admin_key(key: SecretStr | None) -> OperatorKey:
    return OperatorKey(key, "ADMIN_API_KEY", "the admin API")


def _presented(authorization: str) -> bytes:
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials.encode("utf-8", "surrogateescape")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except binascii.Error:
            return b""
        return decoded.partition(b":")[2]
    return b""
