"""Small generated images for image-to-video tests, served at `/_sim/images/{name}`, and the
byte sniffing the simulator uses to enforce jpg/jpeg/png/webp (docs/provider-contract.md, "Create request").
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable
from fractions import Fraction

import av

from gptimage2 import MAX_IMAGE_BYTES
from netguard import sniff_image_type

_WIDTH, _HEIGHT = 64, 48


def sniff_image(data: bytes) -> str | None:
    """The image format by magic bytes, or None: a URL's extension proves nothing. The magic
    numbers are the formats' own, so the simulator reads them with netguard's one sniffer."""
    mime = sniff_image_type(data)
    return mime.removeprefix("image/") if mime else None


def _encode_still(codec: str, pix_fmt: str) -> bytes:
    frame = av.VideoFrame(_WIDTH, _HEIGHT, "rgb24")
    plane = frame.planes[0]
    row = bytes(b for x in range(_WIDTH) for b in ((x * 4) % 256, 110, 190))
    plane.update((row + b"\0" * (plane.line_size - len(row))) * _HEIGHT)
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = _WIDTH, _HEIGHT, pix_fmt  # type: ignore[attr-defined]
    context.time_base = Fraction(1, 25)
    still = frame.reformat(format=pix_fmt)
    still.pts = 0
    packets = [*context.encode(still), *context.encode(None)]  # type: ignore[attr-defined]
    return b"".join(bytes(packet) for packet in packets)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _big_png() -> bytes:
    """A valid PNG just over the 10 MB limit: a private ancillary chunk (`prVt`, which decoders
    skip) carries the bulk, inserted before IEND."""
    small = _encode_still("png", "rgb24")
    iend = small[-12:]
    filler = _png_chunk(b"prVt", b"\0" * (MAX_IMAGE_BYTES + 64 * 1024))
    return small[:-12] + filler + iend


IMAGE_FACTORIES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "sample.png": ("image/png", lambda: _encode_still("png", "rgb24")),
    "sample.jpg": ("image/jpeg", lambda: _encode_still("mjpeg", "yuvj420p")),
    "sample.webp": ("image/webp", lambda: _encode_still("libwebp", "yuv420p")),
    "big.png": ("image/png", _big_png),
    # Named like a PNG, served as one, but not an image: the format is judged by bytes.
    "fake.png": ("image/png", lambda: b"this is not an image, whatever the name says\n" * 4),
}

_cache: dict[str, bytes] = {}
_lock = threading.Lock()


def sample_image(name: str) -> tuple[str, bytes] | None:
    """(content type, bytes) of a named sample image, generated once per process."""
    entry = IMAGE_FACTORIES.get(name)
    if entry is None:
        return None
    content_type, factory = entry
    with _lock:
        if name not in _cache:
            _cache[name] = factory()
        return content_type, _cache[name]
