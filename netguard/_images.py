"""Is this URL an image the provider will accept? Checked with a few bytes, not a download.

The provider takes jpg/jpeg/png/webp up to 10 MB (docs/provider-contract.md). A Range request for
the first bytes tells both the size (Content-Range) and the type (magic bytes, which unlike
the extension or Content-Type cannot be mislabelled by accident).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from ._errors import FetchFailed, ImageRejected
from ._fetch import GuardedClient

SNIFF_BYTES = 32
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+\d+-\d+/(\d+|\*)$", re.IGNORECASE)


def sniff_image_type(head: bytes) -> str | None:
    """The MIME type of an image by its first bytes, for the formats the provider accepts."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class ImageInfo:
    url: str
    final_url: str
    content_type: str
    size_bytes: int


def _declared_size(status: int, headers: dict[str, str]) -> int | None:
    if status == 206:
        match = _CONTENT_RANGE_RE.match(headers.get("content-range", "").strip())
        if match and match.group(1) != "*":
            return int(match.group(1))
        return None
    length = headers.get("content-length")
    return int(length) if length and length.isdigit() else None


async def probe_image(
    client: GuardedClient, url: str, *, max_bytes: int, within_seconds: float = 10.0
) -> ImageInfo:
    """ImageInfo for `url`, or a NetguardError subclass saying why it is not acceptable.

    Reads at most SNIFF_BYTES when the server states the size; when it does not, counts at
    most `max_bytes` + 1 bytes, so the work per URL stays bounded either way.
    """
    try:
        async with asyncio.timeout(within_seconds):
            return await _probe(client, url, max_bytes)
    except TimeoutError as exc:
        raise FetchFailed(f"image URL did not answer within {within_seconds:g} s") from exc


async def _probe(client: GuardedClient, url: str, max_bytes: int) -> ImageInfo:
    # identity: the magic bytes must be the image's, not a gzip stream's.
    headers = {"Range": f"bytes=0-{SNIFF_BYTES - 1}", "Accept-Encoding": "identity"}
    async with client.stream(url, headers=headers) as fetched:
        response = fetched.response
        if response.status_code not in (200, 206):
            raise FetchFailed(f"image URL answered HTTP {response.status_code}")
        size = _declared_size(response.status_code, {k.lower(): v for k, v in response.headers.items()})
        if size is not None and size > max_bytes:
            raise ImageRejected(f"image is {size} bytes; the limit is {max_bytes} bytes (10 MB)")
        if response.status_code == 206 and size is None:
            raise ImageRejected("image server did not state the image size")
        head = b""
        counted = 0
        async for chunk in response.aiter_raw():
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            counted += len(chunk)
            if size is not None and len(head) >= SNIFF_BYTES:
                break
            if counted > max_bytes:
                raise ImageRejected(f"image is larger than {max_bytes} bytes (10 MB)")
        content_type = sniff_image_type(head)
        if content_type is None:
            raise ImageRejected("URL is not a JPEG, PNG or WebP image (judged by its content)")
        return ImageInfo(
            url=url, final_url=fetched.url, content_type=content_type, size_bytes=size or counted
        )
