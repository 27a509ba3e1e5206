"""The API under test, shared by the tests in this folder: one stand-in provider worker and one API
server per package run (uvicorn over real HTTPS, the real Temporal dev server and workflow)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.config import ApiConfig
from devstack.tls import TLSFiles
from tests.helpers.api import (
    ROOMY,
    ApiWith,
    FakeDns,
    ImageServer,
    ServerThread,
    api_settings,
    serving,
    stand_in_worker,
    temporal_address,
)
from tests.helpers.fake_provider import FakeProvider


@pytest.fixture(scope="package")
async def provider_queue(temporal_env: WorkflowEnvironment) -> AsyncIterator[tuple[FakeProvider, str]]:
    provider = FakeProvider()
    async with stand_in_worker(temporal_env.client, provider, "api-tests") as task_queue:
        yield provider, task_queue


@pytest.fixture(scope="package")
def provider(provider_queue: tuple[FakeProvider, str]) -> FakeProvider:
    return provider_queue[0]


@pytest.fixture(scope="package")
def images(dev_tls: TLSFiles) -> Iterator[ImageServer]:
    with ImageServer(dev_tls) as server:
        yield server


@pytest.fixture(scope="package")
def dns() -> FakeDns:
    return FakeDns(
        {
            "rebind.ssrf-test.example": ["127.0.0.1"],
            "mixed.ssrf-test.example": ["93.184.216.34", "10.0.0.7"],
            "mapped.ssrf-test.example": ["::ffff:169.254.169.254"],
        }
    )


@pytest.fixture(scope="package")
def api(
    temporal_env: WorkflowEnvironment,
    provider_queue: tuple[FakeProvider, str],
    dev_tls: TLSFiles,
    dns: FakeDns,
) -> Iterator[ServerThread]:
    settings = api_settings(temporal_address(temporal_env.client), provider_queue[1], dev_tls)
    with serving(create_app(settings, config=ROOMY, resolver=dns), tls=dev_tls, config=ROOMY) as server:
        yield server


@pytest.fixture
async def http(api: ServerThread, dev_tls: TLSFiles) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.base_url, verify=dev_tls.ssl_context(), timeout=30) as client:
        yield client


@pytest.fixture
def temporal(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def api_with(
    temporal_env: WorkflowEnvironment,
    provider_queue: tuple[FakeProvider, str],
    dev_tls: TLSFiles,
    dns: FakeDns,
) -> ApiWith:
    """A second API, beside the package's, on the same Temporal and task queue, with its own knobs."""

    @asynccontextmanager
    async def serve(config: ApiConfig) -> AsyncIterator[httpx.AsyncClient]:
        settings = api_settings(temporal_address(temporal_env.client), provider_queue[1], dev_tls)
        app = create_app(settings, config=config, resolver=dns)
        with serving(app, tls=dev_tls, config=config) as server:
            async with httpx.AsyncClient(base_url=server.base_url, verify=dev_tls.ssl_context()) as client:
                yield client

    return serve
