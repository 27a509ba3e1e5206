"""The HTTP API: health."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter

from api import routers
from api.app import create_app
from api.config import ApiConfig
from devstack.ports import free_port
from devstack.tls import TLSFiles
from tests.helpers.api import (
    CALLBACK_SECRET,
    api_settings,
    auth,
    body,
    create,
    serving,
)
from workflows.callback_token import mint_callback_token
from workflows.ids import generation_workflow_id


async def test_health_and_readiness_with_temporal_up(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ready"}


async def test_app_starts_without_temporal_and_answers_503(dev_tls: TLSFiles) -> None:
    dead = f"127.0.0.1:{free_port()}"
    settings = api_settings(dead, "nowhere", dev_tls)
    config = ApiConfig(temporal_connect_timeout_seconds=1)
    with serving(create_app(settings, config=config), tls=dev_tls, config=config) as server:
        async with httpx.AsyncClient(base_url=server.base_url, verify=dev_tls.ssl_context()) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["type"] == "service_unavailable"
            post = await create(http, body())
            assert post.status_code == 503 and post.headers["retry-after"] == "1"
            assert (await http.get("/v1/generations", headers=auth("demo"))).status_code == 503
            workflow_id = generation_workflow_id("demo", "user-1", "k")
            token = mint_callback_token(CALLBACK_SECRET, workflow_id)
            callback = await http.post(f"/callbacks/gptimage2/{token}", json={"id": "task-1"})
            # 503 makes the provider retry (1, 2, 4 s); polling covers whatever is still lost.
            assert callback.status_code == 503


def test_no_route_hops_to_a_thread_for_its_dependencies() -> None:
    # FastAPI runs a plain `def` dependency in its thread pool: a thread hop on every request
    # (0.1-0.25 ms of the API's CPU per callback or GET, measured) for what is a field read.
    def ours(dependant: Dependant) -> Iterator[Any]:
        for dependency in dependant.dependencies:
            if getattr(dependency.call, "__module__", "").startswith("api."):
                yield dependency.call
            yield from ours(dependency)

    modules = [
        importlib.import_module(f"api.routers.{m.name}") for m in pkgutil.iter_modules(routers.__path__)
    ]
    routes = [
        route
        for module in modules
        for router in vars(module).values()
        if isinstance(router, APIRouter)
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    called = {call for route in routes for call in ours(route.dependant)}
    assert {"get_services", "rate_limited_tenant"} <= {call.__name__ for call in called}
    assert [call.__qualname__ for call in called if not inspect.iscoroutinefunction(call)] == []
