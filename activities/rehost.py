"""Re-host a provider result into our object store before its link expires (24 h).

The download is streamed straight into a multipart upload: memory stays bounded by the part
size whatever the video's size, and the bytes never pass through workflow history or the API.
It is a synchronous activity because the `minio` SDK blocks; the worker runs it in a thread
pool so it cannot starve the event loop (and its heartbeats)."""

from __future__ import annotations

import hashlib
import io
import ssl
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
from minio import Minio
from minio.commonconfig import Tags
from temporalio import activity
from temporalio.exceptions import ApplicationError

from netguard import GuardedSyncClient, NetguardError, SyncResolver, UnsafeURL, system_resolver_sync
from settings import Settings
from workflows.models import ActivityErrorType, OutputObject, RehostInput

from .storage import delivery_url, object_key

# S3's multipart minimum is 5 MiB. Each part is held a few times over while it is read and sent
# (our buffer, minio's copy, the uploads in flight), so the part size sets the memory per copy.
PART_SIZE = 8 * 1024 * 1024
PARALLEL_PARTS = 3  # as many as minio's default: fewer leaves the link idle while a part is sent
READ_CHUNK = 1024 * 1024
MAX_REDIRECTS = 3
HEARTBEAT_EVERY_SECONDS = 1.0
KEEPALIVE_SECONDS = 1.0  # idle download connections close well inside any server's idle timeout
EXPIRED_STATUSES = frozenset({403, 404, 410})
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class _HashingReader:
    """File-like view of an HTTP body that hashes and counts as minio reads it. Each read
    returns the whole requested size (minio concatenates reads, so many small ones are slow)."""

    def __init__(self, chunks: Iterator[bytes], on_progress: Callable[[int], None] | None) -> None:
        self._chunks = chunks
        self._pending = bytearray()
        self._done = False
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0
        self._on_progress = on_progress

    def at_eof(self) -> bool:
        if not self._pending and not self._done:
            try:
                self._pending += next(self._chunks)
            except StopIteration:
                self._done = True
        return self._done and not self._pending

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            try:
                self._pending += next(self._chunks)
            except StopIteration:
                self._done = True
        if size < 0 or size >= len(self._pending):
            out = bytes(self._pending)
            self._pending.clear()
        else:
            out = bytes(memoryview(self._pending)[:size])  # one copy, not slice + bytes
            del self._pending[:size]
        self.sha256.update(out)
        self.bytes_read += len(out)
        if self._on_progress is not None:
            self._on_progress(self.bytes_read)
        return out


def _sha256_tag(digest: str) -> Tags:
    tags = Tags.new_object_tags()
    tags["sha256"] = digest
    return tags


class _Prefixed:
    """The part already read, then the rest of the stream."""

    def __init__(self, head: bytes, rest: _HashingReader) -> None:
        self._head: bytes | None = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head is not None:
            head, self._head = self._head, None
            if size < 0 or len(head) <= size:
                return head if len(head) == size or size < 0 else head + self._rest.read(size - len(head))
            self._head = head[size:]
            return head[:size]
        return self._rest.read(size)


class RehostActivities:
    def __init__(
        self,
        settings: Settings,
        store: Minio,
        *,
        verify: bool | str = True,
        resolver: SyncResolver = system_resolver_sync,
        timeout: httpx.Timeout = DOWNLOAD_TIMEOUT,
    ) -> None:
        self._settings = settings
        self._store = store
        # httpx wants an SSLContext for a custom CA; one per worker, shared by every download.
        verify_with: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        # Results come from the provider's host and RESULT_HOSTS (which may be private, as in
        # the dev stack). With RESULT_HOSTS set nothing else is fetched; without it, any other
        # host must be public, checked on every redirect hop and pinned to the checked address.
        provider_host = urlsplit(settings.gptimage2_base_url).hostname or ""
        allowed = [*settings.result_hosts, provider_host]
        # One client for every download this worker makes (thread-safe): a clip from a host it
        # fetched from moments ago reuses that TLS connection instead of a new handshake per
        # re-host. Idle connections close after KEEPALIVE_SECONDS.
        self._downloads = GuardedSyncClient(
            allowed_private_hosts=allowed,
            only_hosts=allowed if settings.result_hosts else None,
            resolver=resolver,
            verify=verify_with,
            timeout=timeout,
            max_redirects=MAX_REDIRECTS,
            schemes=("http", "https"),
            keepalive_seconds=KEEPALIVE_SECONDS,
        )

    def close(self) -> None:
        self._downloads.close()

    @activity.defn
    def rehost_result(self, job: RehostInput) -> OutputObject:
        key = object_key(job.tenant, job.workflow_id, job.phase, job.index)
        # The first heartbeat goes a second in: a clip copied sooner needs none (the heartbeat
        # timeout is far longer), a long copy reports its progress from then on.
        last_beat = time.monotonic()

        def progress(done: int) -> None:
            nonlocal last_beat
            now = time.monotonic()
            if now - last_beat >= HEARTBEAT_EVERY_SECONDS:
                last_beat = now
                activity.heartbeat({"bytes_done": done, "object_key": key})

        try:
            with self._downloads.stream(job.url) as fetched:
                response = fetched.response
                if response.status_code in EXPIRED_STATUSES:
                    raise ApplicationError(
                        f"result link answered {response.status_code}: it expired or was withdrawn "
                        "before it could be re-hosted",
                        type=ActivityErrorType.LINK_EXPIRED,
                        non_retryable=True,
                    )
                response.raise_for_status()
                expected = (
                    int(response.headers["content-length"]) if "content-length" in response.headers else -1
                )
                reader = _HashingReader(response.iter_bytes(READ_CHUNK), progress)
                metadata: dict[str, str | list[str] | tuple[str]] = {
                    "task-id": job.task_id,
                    "prompt-hash": job.prompt_hash,
                    "user-id": job.user_id,
                    "tenant": job.tenant,
                    "model": job.model,
                    "mode": job.mode.value,
                    "duration": str(job.duration),
                    "quality": job.quality.value,
                    "audio": str(job.generate_audio).lower(),
                    "outcome-category": job.outcome_category,
                    "credits": f"{job.credits:g}",
                }
                content_type = response.headers.get("content-type", "video/mp4").split(";")[0]
                # Most clips fit in one part: read it whole, and it goes up in one PUT that
                # carries its sha256 tag (S3 checks the length of a single PUT itself).
                first = reader.read(PART_SIZE)
                single = reader.at_eof()
                if single:
                    digest = reader.sha256.hexdigest()
                    self._store.put_object(
                        self._settings.s3_bucket,
                        key,
                        io.BytesIO(first),
                        length=len(first),
                        content_type=content_type,
                        metadata=metadata,
                        tags=_sha256_tag(digest),
                    )
                else:
                    self._store.put_object(
                        self._settings.s3_bucket,
                        key,
                        _Prefixed(first, reader),  # type: ignore[arg-type]
                        length=-1,
                        part_size=PART_SIZE,
                        num_parallel_uploads=PARALLEL_PARTS,
                        content_type=content_type,
                        metadata=metadata,
                    )
        except UnsafeURL as exc:
            raise ApplicationError(
                f"refusing to download the result: {exc.reason}",
                type=ActivityErrorType.RESULT_HOST_REFUSED,
                non_retryable=True,
            ) from None
        except NetguardError as exc:  # DNS or connection trouble: worth another attempt
            raise ApplicationError(f"could not download the result: {exc.reason}") from None

        size = reader.bytes_read
        if expected >= 0 and size != expected:
            # A truncated body must not be delivered: fail the attempt so it downloads again.
            raise ApplicationError(f"download truncated: {size} of {expected} bytes")
        if not single:
            digest = reader.sha256.hexdigest()
            stored = self._store.stat_object(self._settings.s3_bucket, key)
            if stored.size != size:
                raise ApplicationError(f"stored object has {stored.size} bytes, expected {size}")
            # A streamed upload's digest is known only once it ends, after the object was
            # written: it goes on as a tag, which S3 stores beside the object without a rewrite.
            self._store.set_object_tags(self._settings.s3_bucket, key, _sha256_tag(digest))
        return OutputObject(
            url=delivery_url(self._store, self._settings, key),
            object_key=key,
            sha256=digest,
            size_bytes=size,
            content_type=content_type,
        )
