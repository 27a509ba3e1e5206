"""Routes that take an operator's key rather than a tenant's: one check, constant time."""

from __future__ import annotations

import hmac

from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr

from .errors import ApiError


def require_key(
    credentials: HTTPAuthorizationCredentials | None, key: SecretStr | None, variable: str, what: str
) -> None:
    """Admits `Authorization: Bearer <key>`; with no key configured, nobody."""
    if key is None:
        raise ApiError(403, "forbidden", f"{what} is off: {variable} is not set")
    presented = credentials.credentials.encode("utf-8", "surrogateescape") if credentials else b""
    if not hmac.compare_digest(presented, key.get_secret_value().encode()):
        raise ApiError(
            401,
            "authentication_error",
            f"missing or invalid key (Authorization: Bearer <{variable}>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
