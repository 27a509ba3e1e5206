"""Real, playable result videos: H.264 (yuv420p) with AAC audio iff audio was requested, of the
requested duration and of the resolution the quality and aspect ratio imply.

Encodes are cheap (12 fps, x264 `ultrafast`: well under a second for 720p) and cached on disk by
parameters, written to a temp file and renamed, so concurrent simulators sharing a cache never
see half a file. A result can be padded to an exact size for re-host benchmarks by appending a
top-level MP4 `free` box, which every demuxer skips, streamed without holding it in memory.
"""

from __future__ import annotations

import array
import asyncio
import math
import os
import struct
import tempfile
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av

from gptimage2 import AspectRatio, Quality

FPS = 12
AUDIO_RATE = 48_000
# Bump when the generated content changes, so stale cache entries are never served.
ENCODER_VERSION = 1
CHUNK = 1024 * 1024
_ZEROS = bytes(CHUNK)  # one reused buffer: padding streams at memory speed

RESOLUTIONS: dict[tuple[Quality, AspectRatio], tuple[int, int]] = {
    (Quality.P720, AspectRatio.WIDE): (1280, 720),
    (Quality.P720, AspectRatio.TALL): (720, 1280),
    (Quality.P720, AspectRatio.SQUARE): (720, 720),
    (Quality.P720, AspectRatio.CLASSIC): (960, 720),
    (Quality.P720, AspectRatio.PORTRAIT): (720, 960),
    (Quality.P720, AspectRatio.CINEMA): (1680, 720),
    (Quality.P720, AspectRatio.ADAPTIVE): (1280, 720),
    (Quality.P480, AspectRatio.WIDE): (854, 480),
    (Quality.P480, AspectRatio.TALL): (480, 854),
    (Quality.P480, AspectRatio.SQUARE): (480, 480),
    (Quality.P480, AspectRatio.CLASSIC): (640, 480),
    (Quality.P480, AspectRatio.PORTRAIT): (480, 640),
    (Quality.P480, AspectRatio.CINEMA): (1120, 480),
    (Quality.P480, AspectRatio.ADAPTIVE): (854, 480),
}


_RENDERED = {quality for quality, _ in RESOLUTIONS}


@dataclass(frozen=True)
class VideoSpec:
    width: int
    height: int
    duration: int
    audio: bool

    @classmethod
    def for_request(
        cls, quality: Quality | None, aspect_ratio: AspectRatio | None, duration: int, audio: bool
    ) -> VideoSpec:
        # Models with other qualities, or none (the frame follows the image), get a 720p-class
        # frame of their ratio: the simulator stands in for the pixels, not their count.
        width, height = RESOLUTIONS[
            (Quality(quality) if quality in _RENDERED else Quality.P720, aspect_ratio or AspectRatio.WIDE)
        ]
        return cls(width, height, duration, audio)

    @property
    def file_name(self) -> str:
        sound = "aac" if self.audio else "mute"
        return f"v{ENCODER_VERSION}-{self.width}x{self.height}-{self.duration}s-{sound}.mp4"


def encode_mp4(spec: VideoSpec, path: Path) -> None:
    """Writes the clip to `path` (blocking, CPU-bound: run it in a thread)."""
    frames = spec.duration * FPS
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        # One keyframe a second keeps seeking (and players) happy; CRF 30 keeps files small.
        video.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "30", "g": str(FPS)}
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if spec.audio else None
        for index in range(frames):
            frame = _video_frame(spec.width, spec.height, index, frames)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            for audio_frame in _tone(spec.duration):
                container.mux(audio.encode(audio_frame))
            container.mux(audio.encode(None))


def _video_frame(width: int, height: int, index: int, frames: int) -> av.VideoFrame:
    """A white bar sweeping across a background whose shade drifts: cheap, yet visibly moving."""
    frame = av.VideoFrame(width, height, "yuv420p")
    luma = frame.planes[0]
    bar = max(8, width // 16)
    left = (index * (width - bar)) // max(1, frames - 1)
    shade = bytes([40 + (index * 3) % 120])
    row = shade * left + b"\xeb" * bar + shade * (width - left - bar)
    luma.update((row + b"\0" * (luma.line_size - width)) * height)
    for plane, value in ((frame.planes[1], 90 + index % 40), (frame.planes[2], 160)):
        plane.update(bytes([value]) * plane.buffer_size)
    frame.pts = index
    return frame


def _tone(duration: int) -> list[av.AudioFrame]:
    """A quiet 400 Hz sine (120 samples per period at 48 kHz, so it tiles exactly)."""
    period = [0.2 * math.sin(2 * math.pi * k / 120) for k in range(120)]
    total, pts, out = duration * AUDIO_RATE, 0, []
    while pts < total:
        count = min(1024, total - pts)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=count)
        frame.sample_rate = AUDIO_RATE
        samples = array.array("f", (period[(pts + k) % 120] for k in range(count))).tobytes()
        plane = frame.planes[0]
        plane.update(samples + b"\0" * (plane.buffer_size - len(samples)))
        frame.pts = pts
        pts += count
        out.append(frame)
    return out


class VideoCache:
    """Encoded clips on disk, one per `VideoSpec`, shared by every task with the same parameters."""

    def __init__(self, directory: Path, workers: int = 2) -> None:
        self.directory = directory
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim-encode")
        self._locks: dict[VideoSpec, threading.Lock] = {}
        self._guard = threading.Lock()

    def ensure(self, spec: VideoSpec) -> Path:
        """The clip's path, encoding it first if no process has yet (blocking)."""
        path = self.directory / spec.file_name
        if path.is_file():
            return path
        with self._guard:
            lock = self._locks.setdefault(spec, threading.Lock())
        with lock:  # one encode per spec in this process; other processes race harmlessly
            if path.is_file():
                return path
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".encoding-", suffix=".mp4", dir=self.directory)
            os.close(fd)
            try:
                encode_mp4(spec, Path(tmp))
                os.replace(tmp, path)  # atomic: readers see no file or a whole file
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return path

    async def aensure(self, spec: VideoSpec) -> Path:
        """As `ensure`, off the event loop: an encode must never stall the server."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.ensure, spec)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def free_box_header(length: int) -> bytes:
    """Header of a top-level `free` box of `length` bytes in all (header included)."""
    if length < 8:
        raise ValueError("a free box needs at least 8 bytes")
    if length <= 0xFFFFFFFF:
        return struct.pack(">I4s", length, b"free")
    if length < 16:
        raise ValueError("a 64-bit free box needs at least 16 bytes")
    return struct.pack(">I4sQ", 1, b"free", length)


@dataclass(frozen=True)
class ServedBody:
    """The bytes a result URL serves: the encoded clip, then an optional padding box."""

    clip: bytes
    padding_header: bytes
    total: int

    @classmethod
    def build(cls, clip: bytes, target_size: int | None) -> ServedBody:
        pad = (target_size or 0) - len(clip)
        # A target below clip size + 8 cannot hold a box: serve the clip as encoded.
        if target_size is None or pad < 8:
            return cls(clip, b"", len(clip))
        return cls(clip, free_box_header(pad), target_size)

    async def chunks(self, start: int, end: int, size: int = CHUNK) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the body, in pieces of at most `size` (<= CHUNK)."""
        size = max(1, min(size, CHUNK))
        header_end = len(self.clip) + len(self.padding_header)
        position = start
        while position < end:
            if position < len(self.clip):
                piece = self.clip[position : min(end, len(self.clip), position + size)]
            elif position < header_end:
                offset = position - len(self.clip)
                piece = self.padding_header[offset : offset + min(end, header_end) - position]
            else:
                count = min(size, end - position)
                piece = _ZEROS if count == CHUNK else _ZEROS[:count]
            position += len(piece)
            yield piece
