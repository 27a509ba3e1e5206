"""A webhook's body: Standard Webhooks' envelope around the generation exactly as the API's
`GET /v1/generations/{id}` returns it, delivery URLs signed afresh at each attempt."""

from __future__ import annotations

import json
from datetime import datetime

from minio import Minio

from api.schemas import GenerationOut
from settings import Settings
from storage import with_fresh_urls
from workflows.models import GenerationView
from workflows.webhook_models import EventType


def webhook_body(
    event: EventType, view: GenerationView, at: datetime, store: Minio, settings: Settings
) -> bytes:
    data = GenerationOut.from_view(with_fresh_urls(view, store, settings)).model_dump(mode="json")
    envelope = {"type": event.value, "timestamp": at.isoformat(), "data": data}
    return json.dumps(envelope, separators=(",", ":")).encode()
