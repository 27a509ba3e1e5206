"""Where a tenant's events go: endpoints from configuration (WEBHOOK_ENDPOINTS) and from the
admin API (the tenant's WebhookEndpointsWorkflow), their secrets, and whether they are
disabled. Used by the API (which endpoints a new generation notifies, the admin routes) and by
the delivery activity (an endpoint's URL and secrets at each attempt)."""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from netguard import Target, UnsafeURL, check_url
from temporal_client import query_or_none
from workflows.ids import TENANT_RE
from workflows.webhook_delivery import WebhookEndpointsWorkflow
from workflows.webhook_models import (
    NOTIFY_URL_ENDPOINT,
    EndpointRecord,
    EventType,
    PlannedTarget,
    RegistryState,
    SetDisabled,
    WebhookPlan,
    registry_workflow_id,
)

from .signing import derive_secret, secret_key

if TYPE_CHECKING:
    from settings import Settings

ENDPOINT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
REGISTRY_CACHE_SECONDS = 2.0  # how stale a registry read may be (a 410's disable, an admin edit)


class ConfiguredEndpoint(BaseModel):
    tenant: str
    id: str = Field(pattern=ENDPOINT_ID_PATTERN)
    url: str
    events: list[EventType] = Field(min_length=1)
    secrets: list[str] = Field(min_length=1, max_length=2)

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not TENANT_RE.match(value):
            raise ValueError("must be lowercase letters, digits or '-'")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[str]) -> list[str]:
        for secret in value:
            secret_key(secret)
        return value


def parse_configured_endpoints(raw: str) -> list[ConfiguredEndpoint]:
    """WEBHOOK_ENDPOINTS; ValueError names the entry and field, never a value (secrets)."""
    if not raw.strip():
        return []
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("WEBHOOK_ENDPOINTS must be a JSON list of endpoints") from None
    if not isinstance(entries, list):
        raise ValueError("WEBHOOK_ENDPOINTS must be a JSON list of endpoints")
    endpoints: list[ConfiguredEndpoint] = []
    for index, entry in enumerate(entries):
        try:
            endpoint = ConfiguredEndpoint.model_validate(entry)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "entry" for e in exc.errors())
            raise ValueError(f"WEBHOOK_ENDPOINTS[{index}]: invalid {fields}") from None
        if any(e.tenant == endpoint.tenant and e.id == endpoint.id for e in endpoints):
            raise ValueError(f"WEBHOOK_ENDPOINTS[{index}]: endpoint id {endpoint.id!r} appears twice")
        endpoints.append(endpoint)
    return endpoints


def destination_schemes(settings: Settings) -> tuple[str, ...]:
    """HTTPS only, but plain HTTP too on a dev stack (local receivers)."""
    from settings import DEV_ENVIRONMENT

    return ("https", "http") if settings.environment == DEV_ENVIRONMENT else ("https",)


def check_destination(settings: Settings, url: str) -> Target:
    """The static netguard checks of a webhook URL (raises UnsafeURL naming the problem); its
    addresses are checked again at every attempt, so a name that later resolves to a private
    address is refused then."""
    return check_url(
        url, allowed_private_hosts=settings.allowed_private_hosts, schemes=destination_schemes(settings)
    )


@dataclass(frozen=True)
class ResolvedEndpoint:
    url: str
    secrets: list[str]
    disabled: str | None  # why, when disabled


class EndpointDirectory:
    """Reads (and disables) endpoints. The registry is read through a short cache, so a burst
    of generations or attempts costs one query per tenant and REGISTRY_CACHE_SECONDS."""

    def __init__(self, settings: Settings, *, cache_seconds: float = REGISTRY_CACHE_SECONDS) -> None:
        self.settings = settings
        self.signing_key = settings.webhook_signing_key.get_secret_value().encode()
        self.configured = settings.webhook_endpoint_list()
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, RegistryState]] = {}

    def configured_for(self, tenant: str) -> list[ConfiguredEndpoint]:
        return [e for e in self.configured if e.tenant == tenant]

    async def registry(self, client: Client, tenant: str, *, fresh: bool = False) -> RegistryState:
        cached = self._cache.get(tenant)
        if cached and not fresh and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        handle = client.get_workflow_handle_for(WebhookEndpointsWorkflow.run, registry_workflow_id(tenant))
        state = await query_or_none(handle, WebhookEndpointsWorkflow.state)
        if state is None:
            state = RegistryState()  # no admin-made endpoint, none disabled yet
        self._cache[tenant] = (time.monotonic(), state)
        return state

    async def change(self, client: Client, tenant: str, task_queue: str, update: Any, arg: Any) -> Any:
        """Runs a registry update (a WebhookEndpointsWorkflow update method), starting the
        tenant's registry if it is not running."""
        start = WithStartWorkflowOperation(
            WebhookEndpointsWorkflow.run,
            RegistryState(),
            id=registry_workflow_id(tenant),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        result = await client.execute_update_with_start_workflow(update, arg, start_workflow_operation=start)
        self._cache.pop(tenant, None)
        return result

    async def disable(
        self, client: Client, tenant: str, task_queue: str, endpoint_id: str, reason: str
    ) -> None:
        change = SetDisabled(endpoint_id=endpoint_id, disabled=True, reason=reason)
        await self.change(client, tenant, task_queue, WebhookEndpointsWorkflow.set_disabled, change)

    async def plan(
        self,
        client: Client,
        tenant: str,
        notify_url: str | None,
        events: Collection[EventType] = tuple(EventType),
    ) -> WebhookPlan | None:
        """Where a new generation's events go; None when nowhere (then it adds no history)."""
        targets = [
            PlannedTarget(endpoint_id=e.id, events=list(e.events)) for e in self.configured_for(tenant)
        ]
        state = await self.registry(client, tenant)
        targets += [PlannedTarget(endpoint_id=r.id, events=list(r.events)) for r in state.endpoints.values()]
        targets = [t for t in targets if t.endpoint_id not in state.disabled]
        if notify_url:
            targets.append(
                PlannedTarget(endpoint_id=NOTIFY_URL_ENDPOINT, events=list(events), url=notify_url)
            )
        return WebhookPlan(targets=targets) if targets else None

    async def resolve(self, client: Client, tenant: str, target: PlannedTarget) -> ResolvedEndpoint | None:
        """The endpoint's URL and active secrets now; None when it no longer exists."""
        if target.url is not None:
            return ResolvedEndpoint(target.url, [self.notify_secret(tenant)], None)
        state = await self.registry(client, tenant)
        disabled = state.disabled.get(target.endpoint_id)
        why = disabled.reason if disabled else None
        for endpoint in self.configured_for(tenant):
            if endpoint.id == target.endpoint_id:
                return ResolvedEndpoint(endpoint.url, endpoint.secrets, why)
        record = state.endpoints.get(target.endpoint_id)
        if record is None:
            return None
        return ResolvedEndpoint(record.url, self.record_secrets(tenant, record), why)

    def notify_secret(self, tenant: str) -> str:
        """The secret that signs the deliveries to a request's own `notify_url`."""
        return derive_secret(self.signing_key, tenant, NOTIFY_URL_ENDPOINT, "1")

    def record_secrets(self, tenant: str, record: EndpointRecord, now: datetime | None = None) -> list[str]:
        """The admin-made endpoint's active secrets, the newest first."""
        secrets = [derive_secret(self.signing_key, tenant, record.id, str(record.version))]
        now = now or datetime.now(UTC)
        if record.previous_version is not None and record.previous_until and now < record.previous_until:
            secrets.append(derive_secret(self.signing_key, tenant, record.id, str(record.previous_version)))
        return secrets


__all__ = ["ConfiguredEndpoint", "EndpointDirectory", "ResolvedEndpoint", "UnsafeURL", "check_destination"]
