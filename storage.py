"""Object storage (any S3 API: SeaweedFS locally, AWS S3, R2, GCS, MinIO) through `minio`.

Shared by the worker (activities/rehost.py writes videos and manifests) and the API (it signs
delivery URLs anew when a generation is read), so it lives beside settings.py rather than in
either: the API never imports `activities/` (tests/test_layers.py)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from minio import Minio
from pydantic import BaseModel

from settings import Settings
from workflows.models import GenerationView


def make_minio(settings: Settings) -> Minio:
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
    )


def object_key(tenant: str, workflow_id: str, phase: str, index: int) -> str:
    """Deterministic per (generation, phase, output index): a retried re-host overwrites the
    same object instead of leaving a second copy."""
    return f"generations/{tenant}/{workflow_id}/{phase}-{index}.mp4"


def manifest_key(key: str) -> str:
    """Where the manifest of the video at `key` is stored."""
    return f"{key}.manifest.json"


class ObjectManifest(BaseModel):
    """What we know about a stored video, kept in a private object beside it (`manifest_key`)
    rather than in the video's own headers: a presigned GET answers with those headers to
    whoever holds the link, and must not tell them the tenant, the user or the credits. Never
    presigned, never behind the CDN path users get. The sha256 lives here, not in an object tag
    (R2 and the GCS XML API have no tagging)."""

    object_key: str
    sha256: str
    size_bytes: int
    content_type: str
    task_id: str
    prompt_hash: str
    user_id: str
    tenant: str
    model: str
    mode: str
    duration: int
    quality: str | None  # None: the model has no quality setting
    audio: bool
    # The moderation outcome docs/provider-contract.md asks to keep: only a completed task is
    # re-hosted, and a task completes only once moderation passed it (a refusal fails it).
    outcome_category: str = "passed"
    credits: float


def delivery_url(store: Minio, settings: Settings, key: str) -> str:
    """The CDN URL when one fronts the bucket, else a presigned GET."""
    if settings.cdn_base_url:
        return f"{settings.cdn_base_url.rstrip('/')}/{quote(key)}"
    return store.presigned_get_object(
        settings.s3_bucket, key, expires=timedelta(seconds=min(settings.presign_ttl_seconds, 7 * 24 * 3600))
    )


def with_fresh_urls(view: GenerationView, store: Minio, settings: Settings) -> GenerationView:
    """The view with its delivery URLs signed anew. A presigned URL recorded at delivery
    expires like the provider's did; whoever reads the generation later gets a working one.
    Signing is local (no request to the store)."""
    if settings.cdn_base_url or not (view.outputs or view.draft):
        return view
    outputs = [
        o.model_copy(update={"url": delivery_url(store, settings, o.object_key)}) for o in view.outputs
    ]
    draft = with_fresh_urls(view.draft, store, settings) if view.draft else None
    return view.model_copy(update={"outputs": outputs, "draft": draft})
