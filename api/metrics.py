"""Prometheus metrics of the API, in a registry per app (tests build many apps per process).

Routes are labelled by template (`/v1/generations/{generation_id}`), never by raw path: ids
would explode the label set and callback paths carry tokens.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("api.access")

_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "api_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "api_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=_FAST_BUCKETS,
            registry=self.registry,
        )
        self.callback_seconds = Histogram(
            "api_callback_seconds",
            "Provider callback handling time (token check, parse, signal)",
            buckets=_FAST_BUCKETS,
            registry=self.registry,
        )
        self.callbacks = Counter(
            "api_callbacks",
            "Provider callbacks by outcome",
            ["outcome"],
            registry=self.registry,
        )
        # The same callbacks in the classes the alerts read (routers.callbacks.CALLBACK_RESULTS).
        self.callback_results = Counter(
            "api_callback_results",
            "Provider callbacks by result: ok, duplicate, forged, unknown_generation, late, error",
            ["result"],
            registry=self.registry,
        )
        self.temporal_calls = Counter(
            "api_temporal_calls",
            "Temporal calls made to answer requests (start, describe, query, signal, update, list)",
            registry=self.registry,
        )
        self.generations = Counter(
            "api_generation_requests",
            "POST /v1/generations by outcome (started, duplicate, conflict, invalid)",
            ["outcome"],
            registry=self.registry,
        )

        # Spend control (api.budgets): per tenant and budget (daily, monthly), from each
        # reservation's answer and the periodic reconciliation.
        budget_labels = ["tenant", "budget"]
        self.budget_spent = Gauge(
            "budget_spent_credits",
            "credits charged in the current window",
            budget_labels,
            registry=self.registry,
        )
        self.budget_reserved = Gauge(
            "budget_reserved_credits",
            "credits reserved by running tasks in the current window",
            budget_labels,
            registry=self.registry,
        )
        self.budget_remaining = Gauge(
            "budget_remaining_credits",
            "limit - spent - reserved in the current window",
            budget_labels,
            registry=self.registry,
        )
        self.budget_refusals = Counter(
            "budget_refusals",
            "POST /v1/generations refused 402, by tenant and budget",
            budget_labels,
            registry=self.registry,
        )
        self.budget_soft_crossings = Gauge(
            "budget_soft_limit_crossings",
            "soft budget limits crossed so far, per tenant",
            ["tenant"],
            registry=self.registry,
        )
        self.provider_used = Gauge(
            "budget_provider_used_credits",
            "the provider's used credits for our key (GET /v1/credits)",
            registry=self.registry,
        )
        self.ledger_spent = Gauge(
            "budget_ledger_spent_credits",
            "credits charged as the tenants' ledgers booked them",
            registry=self.registry,
        )
        self.budget_drift = Gauge(
            "budget_drift_credits",
            "provider used - ledgers spent, change since the API's first reading (alert when not 0)",
            registry=self.registry,
        )
        self.budget_reconciliations = Counter(
            "budget_reconciliations",
            "readings of the provider's used credits against the ledgers (alert when it stalls)",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    """Counts and times every request, and writes the access log line uvicorn's would have
    written, minus the raw path (callback tokens) and any header."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(elapsed)
            access_log.info("%s %s %d %.1fms", method, route, status, elapsed * 1000)
