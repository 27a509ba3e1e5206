"""Re-host a provider result into our object store before its link expires (24 h).

The download is streamed straight into a multipart upload: memory stays bounded by the part
size whatever the video's size, and the bytes never pass through workflow history or the API.
It is a synchronous activity because the `minio` SDK blocks; the worker runs it in a thread
pool so it cannot starve the event loop (and its heartbeats). Downloads go through netguard:
every redirect hop is checked and each connection goes to the address that was checked.

Slow hosts and resumed copies
-----------------------------
A copy heartbeats on a timer (`Heartbeater`), not when bytes arrive, so a host slower than a
part per heartbeat timeout is still a live copy. The details are `CopyProgress`:
`{object_key, upload_id, bytes_done, parts: [[etag, number], ...]}`: the parts S3 has
acknowledged, `bytes_done` counting those contiguous from the first.

A retried attempt (dead worker, stalled link, cut body) continues that upload. It asks S3 which
whole parts the upload really holds (ListParts: parts finished after the last heartbeat count
too; parts finish out of order, so there may be gaps), fetches each missing part below the
highest stored one with a bounded `Range`, then the rest with `Range: bytes=<end of the highest
stored part>-`. A 206 from exactly that offset continues the same upload with the next part; a
200 means the host ignores Range, so the old upload is aborted and the copy starts again from
byte 0. Downloaded twice: the part being read and those being sent when the attempt died.

sha256: hashlib's state cannot be carried to another attempt, and S3 cannot read back the parts
of an unfinished upload. So an attempt that copies from byte 0 hashes the bytes as they pass,
and an attempt that resumed hashes the object once it is complete, reading it back from the
store in one streamed GET (an extra read of the object, on resumed copies only). Either way
the digest is of the stored bytes, whose size is checked against what the host declared.

The video carries no metadata of its own (its headers go to whoever holds a presigned link):
the task id, prompt hash, user, tenant, credits and the sha256 go into a private manifest
object beside it (`storage.ObjectManifest`), written once the video is complete.

No upload is left behind: a copy that fails for good (link expired, host refused) aborts its
upload; an attempt aborts any other unfinished upload of its key that it does not continue; and
the bucket's lifecycle rule (`devstack.seaweed.ensure_bucket_lifecycle`, and
deploy/minio/setup-bucket.sh) aborts, a day on, what a copy that never came back left.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from minio import Minio
from minio.datatypes import Part
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from gptimage2 import VideoParams, classify_result_status
from netguard import GuardedSyncClient, NetguardError, SyncResolver, UnsafeURL, system_resolver_sync
from settings import Settings, outbound_trust
from storage import ObjectManifest, delivery_url, manifest_key, object_key
from workflows import metrics
from workflows.models import ActivityErrorType, OutputObject, RehostInput

from .heartbeat import Heartbeater, heartbeat_interval

# S3's multipart minimum is 5 MiB. Each part is held a few times over while it is read and sent
# (our buffer, the uploads in flight), so the part size sets the memory per copy, and a resumed
# copy downloads again at most the part it was reading.
PART_SIZE = 8 * 1024 * 1024
PARALLEL_PARTS = 3  # as many as minio's default: fewer leaves the link idle while a part is sent
READ_CHUNK = 1024 * 1024
MAX_REDIRECTS = 3
HEARTBEAT_EVERY_SECONDS = 1.0
KEEPALIVE_SECONDS = 1.0  # idle download connections close well inside any server's idle timeout
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")


class CopyProgress(BaseModel):
    """A copy's heartbeat details: what another attempt needs to continue it."""

    object_key: str
    upload_id: str | None = None
    bytes_done: int = 0
    parts: list[tuple[str, int]] = []  # (etag, part number), contiguous from part 1


class _HashingReader:
    """File-like view of an HTTP body that counts (and, unless `sha256` is None, hashes) what is
    read. Each read returns the whole requested size unless the body ends first."""

    def __init__(self, chunks: Iterator[bytes], *, hashing: bool = True) -> None:
        self._chunks = chunks
        self._pending = bytearray()
        self._done = False
        self.sha256: Any = hashlib.sha256() if hashing else None
        self.bytes_read = 0

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
        if self.sha256 is not None:
            self.sha256.update(out)
        self.bytes_read += len(out)
        return out


class _Upload:
    """One multipart upload: parts sent up to PARALLEL_PARTS at a time, and those S3 has
    acknowledged (read by the heartbeat thread, hence the lock)."""

    def __init__(
        self, store: Minio, bucket: str, key: str, upload_id: str, done: dict[int, tuple[str, int]]
    ) -> None:
        self._store, self._bucket, self.key, self.upload_id = store, bucket, key, upload_id
        self._done = dict(done)  # part number -> (etag, size)
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(PARALLEL_PARTS)
        self._pool = ThreadPoolExecutor(PARALLEL_PARTS, thread_name_prefix="rehost-part")
        self._sending: list[Future[None]] = []
        self._next = max(done, default=0) + 1

    def progress(self) -> CopyProgress:
        """Every part stored; `bytes_done` counts those contiguous from part 1."""
        with self._lock:
            done = dict(self._done)
        bytes_done, number = 0, 1
        while number in done:
            bytes_done += done[number][1]
            number += 1
        parts = [(etag, number) for number, (etag, _) in sorted(done.items())]
        return CopyProgress(object_key=self.key, upload_id=self.upload_id, bytes_done=bytes_done, parts=parts)

    def missing(self) -> list[int]:
        """Parts below the highest stored one that are not stored (they were in flight when
        an earlier attempt died: parts finish out of order)."""
        with self._lock:
            return [number for number in range(1, self._next) if number not in self._done]

    @property
    def resume_offset(self) -> int:
        """Where the body continues once the missing parts are filled in."""
        return (self._next - 1) * PART_SIZE

    def send(self, data: bytes, number: int | None = None) -> None:
        """Uploads `data` as part `number` (default: the next one) in the background."""
        # Waits in slices, not forever: a failed part surfaces at once, and a cancellation
        # raised into this thread by the SDK is not stuck behind a blocking acquire.
        while not self._slots.acquire(timeout=0.5):
            self._raise_failed()
        self._raise_failed()
        if number is None:
            number, self._next = self._next, self._next + 1
        self._sending.append(self._pool.submit(self._put, number, data))

    def _put(self, number: int, data: bytes) -> None:
        try:
            etag = self._store._upload_part(self._bucket, self.key, data, None, self.upload_id, number)
            with self._lock:
                self._done[number] = (etag, len(data))
        finally:
            self._slots.release()

    def _raise_failed(self) -> None:
        still = []
        for future in self._sending:
            if future.done():
                future.result()
            else:
                still.append(future)
        self._sending = still

    def complete(self) -> None:
        for future in self._sending:
            future.result()
        with self._lock:
            parts = [Part(number, etag) for number, (etag, _) in sorted(self._done.items())]
        self._store._complete_multipart_upload(self._bucket, self.key, self.upload_id, parts)

    def settle(self) -> None:
        """Waits for the parts in flight (so the next attempt finds them), failures ignored."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        self.settle()
        _abort(self._store, self._bucket, self.key, self.upload_id)


def _abort(store: Minio, bucket: str, key: str, upload_id: str) -> None:
    # Best effort: a failure here leaves the upload to the bucket's lifecycle rule.
    with contextlib.suppress(Exception):
        store._abort_multipart_upload(bucket, key, upload_id)


class _Copy:
    """The state one attempt of a copy shares with its heartbeat thread."""

    def __init__(self, key: str, upload: _Upload | None) -> None:
        self.key = key
        self.upload = upload

    def details(self) -> dict[str, Any]:
        upload = self.upload
        progress = upload.progress() if upload else CopyProgress(object_key=self.key)
        return progress.model_dump(mode="json")


def _declared_total(response: httpx.Response) -> int:
    """The whole object's size as the response declares it; -1 when it does not."""
    content_range = response.headers.get("content-range", "")
    if response.status_code == 206 and (match := _CONTENT_RANGE.match(content_range)):
        return int(match.group(3)) if match.group(3) != "*" else -1
    if response.status_code == 416 and (match := _UNSATISFIED_RANGE.match(content_range)):
        return int(match.group(1))
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else -1


def _range_start(response: httpx.Response) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def _check_length(received: int, total: int) -> None:
    if total >= 0 and received != total:
        # A truncated body must not be delivered: fail the attempt, the next continues it.
        raise ApplicationError(f"download truncated: {received} of {total} bytes")


class RehostActivities:
    def __init__(
        self,
        settings: Settings,
        store: Minio,
        *,
        resolver: SyncResolver = system_resolver_sync,
        timeout: httpx.Timeout = DOWNLOAD_TIMEOUT,
    ) -> None:
        self._settings = settings
        self._store = store
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
            # One context per worker, shared by every download.
            verify=outbound_trust(settings),
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
        copy = _Copy(key, self._resumable(key))
        with Heartbeater(copy.details, every=heartbeat_interval(HEARTBEAT_EVERY_SECONDS)) as heartbeater:
            try:
                started = time.monotonic()
                output = self._copy(job, copy)
                metrics.record_rehost(
                    activity.metric_meter(),
                    job.params.model,
                    job.phase,
                    output.size_bytes,
                    time.monotonic() - started,
                )
                return output
            except ApplicationError as exc:
                if exc.non_retryable and copy.upload is not None:
                    copy.upload.abort()  # no attempt will continue it
                    copy.upload = None
                raise
            except BaseException:
                # Another attempt continues from here: tell it the latest parts.
                if copy.upload is not None:
                    copy.upload.settle()
                    with contextlib.suppress(Exception):
                        heartbeater.beat()
                raise
            finally:
                if copy.upload is not None:
                    copy.upload.settle()

    def _resumable(self, key: str) -> _Upload | None:
        """The unfinished upload of `key` an earlier attempt left, with its contiguous parts;
        None for a first attempt or nothing to continue. Other unfinished uploads of the key
        are aborted."""
        info = activity.info()
        if info.attempt <= 1 and not info.heartbeat_details:
            return None
        bucket = self._settings.s3_bucket
        remembered: str | None = None
        with contextlib.suppress(ValidationError, IndexError, TypeError):
            progress = CopyProgress.model_validate(info.heartbeat_details[0])
            remembered = progress.upload_id if progress.object_key == key else None
        listing = self._store._list_multipart_uploads(bucket, prefix=key)
        uploads = [upload.upload_id for upload in listing.uploads if upload.object_name == key]
        # The one the last heartbeat named, else the newest (its attempt died before a beat).
        chosen = remembered if remembered in uploads else (uploads[-1] if uploads else None)
        for upload_id in uploads:
            if upload_id != chosen and upload_id is not None:
                _abort(self._store, bucket, key, upload_id)
        if chosen is None:
            return None
        done = self._stored_parts(key, chosen)
        if not done:
            _abort(self._store, bucket, key, chosen)
            return None
        return _Upload(self._store, bucket, key, chosen, done)

    def _stored_parts(self, key: str, upload_id: str) -> dict[int, tuple[str, int]]:
        """The parts S3 holds for the upload that are PART_SIZE long. A shorter part is never
        trusted: SeaweedFS lists a part whose upload was cut off by the kill with the bytes it
        got. (A genuine short last part is simply sent again.)"""
        listed: dict[int, tuple[str, int]] = {}
        marker: str | None = None
        while True:
            page = self._store._list_parts(
                self._settings.s3_bucket, key, upload_id, part_number_marker=marker
            )
            listed.update({part.part_number: (part.etag, part.size or 0) for part in page.parts})
            if not page.is_truncated:
                break
            marker = page.next_part_number_marker
        return {number: part for number, part in listed.items() if part[1] == PART_SIZE}

    @contextmanager
    def _download(self, url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        try:
            with self._downloads.stream(url, headers=headers) as fetched:
                response = fetched.response
                verdict = classify_result_status(response.status_code)
                if verdict is not None:
                    raise ApplicationError(
                        f"result link answered {response.status_code}: it expired or was withdrawn "
                        "before it could be re-hosted",
                        type=ActivityErrorType.LINK_EXPIRED,
                        non_retryable=not verdict.retryable,
                    )
                yield response
        except UnsafeURL as exc:
            raise ApplicationError(
                f"refusing to download the result: {exc.reason}",
                type=ActivityErrorType.RESULT_HOST_REFUSED,
                non_retryable=True,
            ) from None
        except NetguardError as exc:  # DNS or connection trouble: worth another attempt
            raise ApplicationError(f"could not download the result: {exc.reason}") from None

    def _fill_gaps(self, job: RehostInput, copy: _Copy) -> None:
        """Downloads and stores the parts an earlier attempt left missing below its highest
        stored one, each with a bounded Range request. A host that ignores Range means the
        copy starts over (the upload is aborted and `copy.upload` cleared)."""
        assert copy.upload is not None
        for number in copy.upload.missing():
            start = (number - 1) * PART_SIZE
            with self._download(job.url, {"Range": f"bytes={start}-{start + PART_SIZE - 1}"}) as response:
                if response.status_code == 200:
                    copy.upload.abort()
                    copy.upload = None
                    return
                if response.status_code != 206 or _range_start(response) != start:
                    raise ApplicationError(
                        f"result host answered {response.status_code} to a request for bytes {start}-"
                    )
                data = response.read()
            _check_length(len(data), PART_SIZE)
            copy.upload.send(data, number)

    def _copy(self, job: RehostInput, copy: _Copy) -> OutputObject:
        bucket = self._settings.s3_bucket
        if copy.upload is not None:
            self._fill_gaps(job, copy)
        offset = copy.upload.resume_offset if copy.upload else 0
        with self._download(job.url, {"Range": f"bytes={offset}-"} if offset else {}) as response:
            total = _declared_total(response)
            if offset and response.status_code == 200 and copy.upload is not None:
                # The host ignores Range: this is the whole body again, so the copy starts over.
                copy.upload.abort()
                copy.upload, offset = None, 0
            elif offset and not (
                (response.status_code == 206 and _range_start(response) == offset)
                or (response.status_code == 416 and total == offset)  # every part was stored
            ):
                raise ApplicationError(
                    f"result host answered {response.status_code} to a request for bytes {offset}-"
                )
            elif not offset:
                response.raise_for_status()
            content_type = response.headers.get("content-type", "video/mp4").split(";")[0]
            body = response.iter_bytes(READ_CHUNK) if response.status_code != 416 else iter(())
            reader = _HashingReader(body, hashing=offset == 0)
            if copy.upload is None:
                first = reader.read(PART_SIZE)
                if reader.at_eof():
                    # Most clips fit in one part: one PUT (S3 checks its length itself).
                    _check_length(len(first), total)
                    self._store.put_object(
                        bucket, copy.key, io.BytesIO(first), length=len(first), content_type=content_type
                    )
                    return self._output(job, copy.key, reader.sha256.hexdigest(), len(first), content_type)
                # No x-amz-meta-* on the video: its headers go to whoever holds a link.
                headers: dict[str, str | list[str] | tuple[str]] = {"Content-Type": content_type}
                upload_id = self._store._create_multipart_upload(bucket, copy.key, headers)
                copy.upload = _Upload(self._store, bucket, copy.key, upload_id, {})
                copy.upload.send(first)
            while block := reader.read(PART_SIZE):
                if reader.at_eof():
                    _check_length(offset + reader.bytes_read, total)
                copy.upload.send(block)
            _check_length(offset + reader.bytes_read, total)
        size = offset + reader.bytes_read
        copy.upload.complete()
        stored = self._store.stat_object(bucket, copy.key)
        if stored.size != size:
            raise ApplicationError(f"stored object has {stored.size} bytes, expected {size}")
        digest = reader.sha256.hexdigest() if reader.sha256 is not None else self._stored_sha256(copy.key)
        return self._output(job, copy.key, digest, size, stored.content_type or content_type)

    def _stored_sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        response = self._store.get_object(self._settings.s3_bucket, key)
        try:
            for chunk in response.stream(READ_CHUNK):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
        return digest.hexdigest()

    def _output(self, job: RehostInput, key: str, digest: str, size: int, content_type: str) -> OutputObject:
        """Writes the video's private manifest, then describes the video for the workflow."""
        about = ObjectManifest.model_fields.keys() & RehostInput.model_fields.keys()  # task, user, credits…
        made_with = ObjectManifest.model_fields.keys() & VideoParams.model_fields.keys()  # model, duration…
        manifest = ObjectManifest(
            object_key=key,
            sha256=digest,
            size_bytes=size,
            content_type=content_type,
            audio=job.params.generate_audio,
            **job.model_dump(mode="json", include=about),
            **job.params.model_dump(mode="json", include=made_with),
        )
        body = manifest.model_dump_json(indent=1).encode()
        self._store.put_object(
            self._settings.s3_bucket,
            manifest_key(key),
            io.BytesIO(body),
            length=len(body),
            content_type="application/json",
        )
        return OutputObject(
            url=delivery_url(self._store, self._settings, key),
            object_key=key,
            sha256=digest,
            size_bytes=size,
            content_type=content_type,
        )
