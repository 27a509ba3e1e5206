"""Prometheus metrics of the API, in a registry per app (tests build many apps per process).

Routes are labelled by template (`/v1/generations/{generation_id}`), never by raw path: ids
would explode the label set and callback paths carry tokens.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
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
