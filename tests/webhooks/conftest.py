"""An API of the webhook tests' own, beside the session stack's (same Temporal, worker and task
queue), with tenants no other test uses: an endpoint made for one of them can reach no other
test's generations."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from api.app import create_app
from devstack.testbed import Testbed
from tests.helpers.api import serving

TENANT_KEYS = {"hooks": "hooks-key", "gone": "gone-key"}


@dataclass(frozen=True)
class HooksApi:
    url: str
    admin_key: str

    def client(self, tenant: str, ca: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=ca),
            headers={"Authorization": f"Bearer {TENANT_KEYS[tenant]}"},
            timeout=30,
        )

    def admin(self, ca: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.url}/v1/admin/tenants",
            verify=ssl.create_default_context(cafile=ca),
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )


@pytest.fixture(scope="module")
def hooks_api(stack: Testbed) -> Iterator[HooksApi]:
    keys = ",".join(f"{tenant}:{key}" for tenant, key in TENANT_KEYS.items())
    settings = stack.settings.model_copy(update={"api_keys": SecretStr(keys)})
    assert settings.admin_api_key is not None
    with serving(create_app(settings), tls=stack.tls) as server:
        yield HooksApi(server.base_url, settings.admin_api_key.get_secret_value())


@pytest.fixture
async def hooks(hooks_api: HooksApi, stack: Testbed) -> AsyncIterator[httpx.AsyncClient]:
    async with hooks_api.client("hooks", str(stack.tls.ca)) as client:
        yield client


@pytest.fixture
async def admin(hooks_api: HooksApi, stack: Testbed) -> AsyncIterator[httpx.AsyncClient]:
    async with hooks_api.admin(str(stack.tls.ca)) as client:
        yield client
