"""Webhooks in the API: which endpoints a new generation notifies (and the request's
`notify_url`, checked like any outbound URL), the deliveries of a generation, and the admin
operations on a tenant's endpoints."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowUpdateFailedError

from netguard import NetguardError, Resolver, resolve_public, system_resolver
from settings import Settings
from temporal_client import query_or_none
from webhooks.endpoints import EndpointDirectory, check_destination
from workflows import control
from workflows.generation import VideoGenerationWorkflow
from workflows.ids import tenant_of
from workflows.webhook_delivery import WebhookDeliveryWorkflow, WebhookEndpointsWorkflow
from workflows.webhook_models import (
    DeliveryRecord,
    EndpointRecord,
    EventType,
    RegistryState,
    Rotate,
    SetDisabled,
    WebhookPlan,
    delivery_workflow_id,
)

from .errors import ApiError, FieldError, invalid
from .service import not_found, unavailable
from .temporal import TemporalGateway, TemporalUnavailable

T = TypeVar("T")


def url_problem(settings: Settings, url: str) -> str | None:
    try:
        check_destination(settings, url)
    except NetguardError as exc:
        return exc.reason
    return None


class WebhookService:
    def __init__(
        self, gateway: TemporalGateway, settings: Settings, resolver: Resolver = system_resolver
    ) -> None:
        self.gateway = gateway
        self.settings = settings
        self.resolver = resolver
        self.directory = EndpointDirectory(settings)

    async def _call(self, operation: Callable[[Client], Awaitable[T]]) -> T:
        try:
            return await self.gateway.call(operation)
        except TemporalUnavailable as exc:
            raise unavailable(exc) from exc

    async def check_url(self, field: str, url: str) -> None:
        """422 naming `field` unless `url` passes netguard: scheme, form, and every address
        its name resolves to (checked again at each delivery attempt)."""
        problem = url_problem(self.settings, url)
        if problem is None:
            try:
                await resolve_public(check_destination(self.settings, url), self.resolver)
            except NetguardError as exc:
                problem = exc.reason
        if problem:
            raise invalid([FieldError(field=field, message=problem)])

    async def plan(self, tenant: str, notify_url: str | None) -> WebhookPlan | None:
        return await self._call(lambda client: self.directory.plan(client, tenant, notify_url))

    async def deliveries(self, tenant: str, generation_id: str) -> list[DeliveryRecord]:
        """Each event's delivery attempts: the generation's own immediate attempt, or, for an
        event it did not settle, its delivery workflow's record (which starts with that attempt;
        running deliveries answer a query, ended ones their result). 404 for an unknown
        generation or another tenant's."""
        if tenant_of(generation_id) != tenant:
            raise not_found(generation_id)

        async def read(client: Client) -> list[DeliveryRecord]:
            await control.describe_generation(client, generation_id, tenant=tenant)
            generation = client.get_workflow_handle_for(VideoGenerationWorkflow.run, generation_id)
            made, retried = await asyncio.gather(
                query_or_none(generation, VideoGenerationWorkflow.webhook_deliveries),
                asyncio.gather(*(self._delivery(client, generation_id, e) for e in EventType)),
            )
            first = {record.event: record for record in made or []}
            records = [found or first.get(event) for event, found in zip(EventType, retried, strict=True)]
            return [record for record in records if record is not None]

        try:
            return await self._call(read)
        except control.GenerationNotFound as exc:
            raise not_found(generation_id) from exc

    @staticmethod
    async def _delivery(client: Client, generation_id: str, event: EventType) -> DeliveryRecord | None:
        handle = client.get_workflow_handle_for(
            WebhookDeliveryWorkflow.run, delivery_workflow_id(generation_id, event)
        )
        return await query_or_none(handle, WebhookDeliveryWorkflow.deliveries)

    # ---- admin -------------------------------------------------------------------------------

    async def endpoints(self, tenant: str) -> dict[str, Any]:
        state = await self._call(lambda client: self.directory.registry(client, tenant, fresh=True))
        configured = [
            {"id": e.id, "url": e.url, "events": e.events, "source": "configuration"}
            for e in self.directory.configured_for(tenant)
        ]
        made = [{**r.model_dump(mode="json"), "source": "admin"} for r in state.endpoints.values()]
        for endpoint in [*configured, *made]:
            disabled = state.disabled.get(str(endpoint["id"]))
            endpoint["disabled"] = disabled.model_dump(mode="json") if disabled else None
        return {"data": [*configured, *made], "notify_url_secret": self.directory.notify_secret(tenant)}

    async def create(self, tenant: str, url: str, events: list[EventType]) -> dict[str, Any]:
        await self.check_url("url", url)
        record = EndpointRecord(id="ep_" + uuid.uuid4().hex[:16], url=url, events=events)
        made = await self._change(tenant, WebhookEndpointsWorkflow.put, record)
        return self._with_secrets(tenant, made)

    async def update(
        self,
        tenant: str,
        endpoint_id: str,
        *,
        url: str | None,
        events: list[EventType] | None,
        enabled: bool | None,
    ) -> dict[str, Any]:
        if enabled is not None:
            self._known(tenant, endpoint_id, await self._state(tenant))
            change = SetDisabled(endpoint_id=endpoint_id, disabled=not enabled, reason="disabled by an admin")
            await self._change(tenant, WebhookEndpointsWorkflow.set_disabled, change)
        if url is not None or events is not None:
            state = await self._state(tenant)
            record = state.endpoints.get(endpoint_id)
            if record is None:
                raise ApiError(
                    409, "conflict", f"endpoint {endpoint_id!r} comes from WEBHOOK_ENDPOINTS: change it there"
                )
            if url is not None:
                await self.check_url("url", url)
            changed = record.model_copy(update={"url": url or record.url, "events": events or record.events})
            await self._change(tenant, WebhookEndpointsWorkflow.put, changed)
        return await self.endpoints(tenant)

    async def rotate(self, tenant: str, endpoint_id: str) -> dict[str, Any]:
        rotate = Rotate(endpoint_id=endpoint_id, grace_seconds=self.settings.webhook_rotation_grace_seconds)
        return self._with_secrets(tenant, await self._change(tenant, WebhookEndpointsWorkflow.rotate, rotate))

    async def delete(self, tenant: str, endpoint_id: str) -> None:
        await self._change(tenant, WebhookEndpointsWorkflow.remove, endpoint_id)

    def _with_secrets(self, tenant: str, record: EndpointRecord) -> dict[str, Any]:
        return {**record.model_dump(mode="json"), "secrets": self.directory.record_secrets(tenant, record)}

    async def _state(self, tenant: str) -> RegistryState:
        return await self._call(lambda client: self.directory.registry(client, tenant, fresh=True))

    def _known(self, tenant: str, endpoint_id: str, state: RegistryState) -> None:
        configured = {e.id for e in self.directory.configured_for(tenant)}
        if endpoint_id not in configured and endpoint_id not in state.endpoints:
            raise ApiError(404, "not_found", f"no webhook endpoint {endpoint_id[:100]!r}")

    async def _change(self, tenant: str, update: Any, arg: Any) -> Any:
        async def change(client: Client) -> Any:
            return await self.directory.change(client, tenant, self.settings.task_queue, update, arg)

        try:
            return await self._call(change)
        except WorkflowUpdateFailedError as exc:
            raise ApiError(404, "not_found", str(exc.cause or exc)) from exc
