"""The API as one ASGI app: generations for backend services, the provider's callback,
health and metrics, and the Temporal Web UI's codec server (api/codec.py).

It validates, authenticates, starts, signals and queries; everything durable happens in the
workflow. Temporal is connected lazily, so the app starts (and says so on /healthz) while
Temporal is down; /readyz and /v1 answer 503 until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from temporalio.client import Client

from netguard import GuardedClient, Resolver, system_resolver
from settings import Settings, get_settings, outbound_trust
from temporal_client import CODEC_PATH

from .auth import TenantKeys, admin_key, ops_key
from .budgets import BudgetService
from .codec import codec_app
from .config import ApiConfig
from .deps import ApiServices
from .errors import install_error_handlers
from .expected import ExpectedReady
from .limits import RequestLimits
from .metrics import ApiMetrics, MetricsMiddleware
from .ops import OpsService
from .progress import ProgressHub
from .ratelimit import TokenBucketLimiter
from .routers import budgets as budget_routes
from .routers import callbacks, generation_events, generations, health, models, ops, presets, webhooks
from .schemas import CreateGenerationRequest
from .service import CallbackService, GenerationService
from .temporal import TemporalGateway, TemporalUnavailable
from .validation import ImageChecker
from .webhooks import WebhookService

TITLE = "Reliable video generation API"
VERSION = "1.0.0"


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    config: ApiConfig | None = None,
    resolver: Resolver | None = None,
) -> FastAPI:
    """`resolver` replaces DNS for image URL checks (tests); `config` the API_* knobs."""
    settings = settings or get_settings()
    config = config or ApiConfig()
    metrics = ApiMetrics()
    gateway = TemporalGateway(settings, config, metrics, temporal_client)
    webhook_service = WebhookService(gateway, settings, resolver or system_resolver)
    progress = ProgressHub(gateway)
    guarded = GuardedClient(
        allowed_private_hosts=settings.allowed_private_hosts,
        resolver=resolver or system_resolver,
        verify=outbound_trust(settings),
        timeout=config.image_check_timeout_seconds,
    )
    budgets = BudgetService(gateway, settings, metrics)
    services = ApiServices(
        settings=settings,
        config=config,
        tenants=TenantKeys(settings.tenant_keys()),
        limiter=TokenBucketLimiter(config.rate_limit_per_second, config.rate_limit_burst),
        gateway=gateway,
        images=ImageChecker(guarded, timeout=config.image_check_timeout_seconds),
        metrics=metrics,
        generations=GenerationService(
            gateway,
            settings,
            metrics,
            expected=ExpectedReady(gateway, config),
            budgets=budgets,
            webhooks=webhook_service,
        ),
        callbacks=CallbackService(gateway, settings, config),
        ops=OpsService(gateway, settings, config),
        ops_key=ops_key(settings.ops_api_key, "the ops page"),
        admin_key=admin_key(settings.admin_api_key),
        budgets=budgets,
        webhooks=webhook_service,
        progress=progress,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Connect in the background: startup must not wait for (or fail on) Temporal.
        warm_up = asyncio.create_task(_connect_quietly(gateway))
        if budgets.budgets:
            budgets.start_reconciling()
        try:
            yield
        finally:
            warm_up.cancel()
            await budgets.aclose()
            await guarded.aclose()
            await progress.aclose()

    app = FastAPI(
        title=TITLE,
        version=VERSION,
        description="Durable AI video generation: one generation per user intent (Idempotency-Key).",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(generations.router)
    app.include_router(models.router)
    app.include_router(presets.router)
    app.include_router(budget_routes.usage_router)
    app.include_router(budget_routes.admin_router)
    app.include_router(generation_events.router)
    app.include_router(webhooks.router)
    app.include_router(callbacks.router)
    app.include_router(health.router)
    app.include_router(ops.router)
    # An app of its own: it has its own key and the only CORS grant (to the Temporal Web UI).
    app.mount(CODEC_PATH, codec_app(settings))
    app.add_middleware(
        RequestLimits, max_bytes=config.max_body_bytes, max_header_bytes=config.max_header_bytes
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def openapi() -> dict[str, Any]:
        return build_openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _connect_quietly(gateway: TemporalGateway) -> None:
    with contextlib.suppress(TemporalUnavailable):
        await gateway.client()


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the create body, which the route parses itself (see
    `routers.generations`) and so FastAPI does not register on its own."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = CreateGenerationRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in body.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components["CreateGenerationRequest"] = body
    # FastAPI adds a default 422 (HTTPValidationError) to routes with parameters; ours answers
    # in ErrorResponse, declared where a 422 can happen, so the defaults would only mislead.
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            default = operation.get("responses", {}).get("422", {})
            if "HTTPValidationError" in str(default):
                del operation["responses"]["422"]
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema
