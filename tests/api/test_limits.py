"""The HTTP API: limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.config import ApiConfig
from devstack.tls import TLSFiles
from tests.helpers.api import (
    api_settings,
    auth,
    serving,
    temporal_address,
)
from tests.helpers.fake_provider import FakeProvider


async def test_oversized_bodies_are_413(http: httpx.AsyncClient) -> None:
    big = {"user_id": "u", "prompt": "x" * (70 * 1024)}
    headers = {**auth("demo"), "Idempotency-Key": uuid.uuid4().hex}
    assert (await http.post("/v1/generations", json=big, headers=headers)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"x" * 1024

    chunked = await http.post("/v1/generations", content=chunks(), headers=headers)
    assert chunked.status_code == 413
    assert chunked.json()["error"]["type"] == "request_too_large"
    callback = await http.post("/callbacks/gptimage2/x.y", content=b"{" + b" " * (70 * 1024) + b"}")
    assert callback.status_code == 413


@pytest.mark.parametrize("size", [20 * 1024, 300 * 1024])
async def test_oversized_headers_are_refused(http: httpx.AsyncClient, size: int) -> None:
    # A block that arrives whole is checked by the app (431); one h11 has to buffer across
    # reads is cut off by h11's own limit (400) before the app sees it.
    response = await http.get("/v1/generations", headers={**auth("demo"), "X-Padding": "x" * size})
    assert response.status_code in (400, 431)
    assert (await http.get("/healthz")).status_code == 200


async def test_rate_limit_is_per_tenant_with_retry_after(
    temporal_env: WorkflowEnvironment, provider_queue: tuple[FakeProvider, str], dev_tls: TLSFiles
) -> None:
    config = ApiConfig(rate_limit_per_second=0.01, rate_limit_burst=3)
    settings = api_settings(temporal_address(temporal_env.client), provider_queue[1], dev_tls)
    with serving(create_app(settings, config=config), tls=dev_tls, config=config) as server:
        async with httpx.AsyncClient(base_url=server.base_url, verify=dev_tls.ssl_context()) as http:
            codes = [
                (await http.get("/v1/generations/x", headers=auth("demo"))).status_code for _ in range(4)
            ]
            assert codes == [404, 404, 404, 429]
            limited = await http.get("/v1/generations/x", headers=auth("demo"))
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["retry-after"]) <= 100
            assert limited.json()["error"]["type"] == "rate_limited"
            assert (await http.get("/v1/generations/x", headers=auth("acme"))).status_code == 404
            # Callbacks are never throttled: losing one costs a poll cycle.
            assert (await http.post("/callbacks/gptimage2/x.y", json={"id": "t"})).status_code == 401
