"""FastAPI dependencies: the app's services, the caller's tenant, the rate limit, the key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from settings import Settings

from .auth import OperatorKey, TenantKeys
from .budgets import BudgetService
from .config import ApiConfig
from .errors import ApiError
from .metrics import ApiMetrics
from .ops import OpsService
from .progress import ProgressHub
from .ratelimit import TokenBucketLimiter
from .service import CallbackService, GenerationService
from .temporal import TemporalGateway
from .validation import ImageChecker
from .webhooks import WebhookService


@dataclass
class ApiServices:
    settings: Settings
    config: ApiConfig
    tenants: TenantKeys
    limiter: TokenBucketLimiter
    gateway: TemporalGateway
    images: ImageChecker
    metrics: ApiMetrics
    generations: GenerationService
    callbacks: CallbackService
    ops: OpsService
    ops_key: OperatorKey
    admin_key: OperatorKey
    budgets: BudgetService
    webhooks: WebhookService
    progress: ProgressHub


# The dependencies are `async def` although none awaits: FastAPI runs a plain `def` dependency
# in its thread pool, a thread hop on every request (each callback, each GET) for a field read.


async def get_services(request: Request) -> ApiServices:
    services: ApiServices = request.app.state.services
    return services


Services = Annotated[ApiServices, Depends(get_services)]

# auto_error=False: a missing header is our 401 with our error body, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="A tenant's API key")


async def authenticated_tenant(
    services: Services,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    tenant = services.tenants.tenant_for(credentials.credentials) if credentials else None
    if tenant is None:
        raise ApiError(
            401,
            "authentication_error",
            "missing or invalid API key (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


async def rate_limited_tenant(
    services: Services, tenant: Annotated[str, Depends(authenticated_tenant)]
) -> str:
    wait = services.limiter.take(tenant)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            "too many requests for this tenant; slow down",
            headers={"Retry-After": TokenBucketLimiter.retry_after_header(wait)},
        )
    return tenant


Tenant = Annotated[str, Depends(rate_limited_tenant)]


async def admin(
    services: Services,
    authorization: Annotated[str | None, Header(description="Bearer <ADMIN_API_KEY>")] = None,
) -> None:
    """The admin API: `Authorization: Bearer <ADMIN_API_KEY>`; no key configured, no admin."""
    services.admin_key.check(authorization)


# Printable ASCII, no surrounding spaces (HTTP strips them, so they could not round-trip).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="One key per user intent (e.g. per click). Required; 1-255 printable ASCII "
        "characters. The same key and body again returns the same generation.",
    ),
]
