"""Results are real videos: H.264 yuv420p, AAC iff audio was asked for, the requested duration
and the resolution quality x aspect ratio imply; `#size=` pads to an exact size and the file
still opens. Plus the sample images and the on-disk cache."""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from gptimage2 import AspectRatio, GPTImage2Client, Quality, TaskStatus
from gptimage2.profiles import SEEDANCE
from simulator.images import sample_image, sniff_image
from simulator.testing import SimulatorHandle, running_simulator
from simulator.video import RESOLUTIONS, ServedBody, VideoCache, VideoSpec, free_box_header


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def sim(cache_dir: Path) -> Iterator[SimulatorHandle]:
    with running_simulator(time_scale=1000, cache_dir=cache_dir) as handle:
        yield handle


async def download(sim: SimulatorHandle, client: GPTImage2Client, prompt: str, **fields: object) -> bytes:
    task = await client.create_task({"prompt": f"{prompt} #gen=5 [{uuid.uuid4().hex[:8]}]", **fields})
    await sim.await_(task_id=task.id)
    done = await client.get_task(task.id)
    assert done.known_status is TaskStatus.COMPLETED and done.results
    async with httpx.AsyncClient(verify=sim.ssl_context()) as http:
        response = await http.get(done.results[0])
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)
    return response.content


def probe(data: bytes) -> tuple[float, int, int, str, str, list[str]]:
    """(duration, width, height, video codec, pixel format, audio codecs) as PyAV reads them."""
    with av.open(io.BytesIO(data), "r") as container:
        assert container.duration is not None
        video = container.streams.video[0]
        audio = [stream.codec_context.name for stream in container.streams.audio]
        fmt = video.codec_context.format
        assert fmt is not None
        return (
            container.duration / av.time_base,
            video.codec_context.width,
            video.codec_context.height,
            video.codec_context.name,
            fmt.name,
            audio,
        )


@pytest.mark.parametrize(
    ("quality", "aspect_ratio", "audio", "duration", "size"),
    [
        ("720p", "16:9", True, 4, (1280, 720)),
        ("480p", "9:16", False, 5, (480, 854)),
        ("480p", "21:9", True, 6, (1120, 480)),
    ],
)
async def test_result_is_a_playable_mp4_of_the_requested_shape(
    sim: SimulatorHandle,
    client: GPTImage2Client,
    quality: str,
    aspect_ratio: str,
    audio: bool,
    duration: int,
    size: tuple[int, int],
) -> None:
    data = await download(
        sim,
        client,
        "a red kite over hills",
        quality=quality,
        aspect_ratio=aspect_ratio,
        generate_audio=audio,
        duration=duration,
    )
    seconds, width, height, codec, pix_fmt, audio_codecs = probe(data)
    assert abs(seconds - duration) <= 0.2
    assert (width, height) == size and codec == "h264" and pix_fmt == "yuv420p"
    assert audio_codecs == (["aac"] if audio else [])


async def test_size_directive_pads_to_the_exact_size_and_the_file_still_opens(
    sim: SimulatorHandle, client: GPTImage2Client
) -> None:
    target = 3_000_000
    data = await download(
        sim, client, f"padded #size={target}", quality="480p", duration=4, generate_audio=False
    )
    assert len(data) == target
    assert abs(probe(data)[0] - 4) <= 0.2
    # Walk the top-level boxes: the padding is one `free` box closing the file.
    offset, boxes = 0, []
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append(kind)
        offset += length
    assert offset == target and boxes[-1] == b"free" and b"moov" in boxes


def test_resolution_table_covers_every_quality_and_aspect_ratio() -> None:
    # Seedance's qualities are rendered at their size; other models' at 720p (simulator/video.py).
    assert set(RESOLUTIONS) == {(q, a) for q in SEEDANCE.qualities for a in AspectRatio}
    assert RESOLUTIONS[(Quality.P720, AspectRatio.ADAPTIVE)] == RESOLUTIONS[(Quality.P720, AspectRatio.WIDE)]
    for (quality, _), (width, height) in RESOLUTIONS.items():
        assert min(width, height) == int(quality.value.rstrip("p"))
        assert width % 2 == 0 and height % 2 == 0  # yuv420p needs even sides


def test_large_padding_uses_a_64_bit_box_header() -> None:
    five_gib = 5 * 1024**3
    header = free_box_header(five_gib)
    assert struct.unpack(">I4sQ", header) == (1, b"free", five_gib)
    assert free_box_header(8) == struct.pack(">I4s", 8, b"free")


async def test_served_body_slices_are_consistent() -> None:
    body = ServedBody.build(b"C" * 1000, 5000)
    whole = b"".join([piece async for piece in body.chunks(0, body.total, 333)])
    assert len(whole) == 5000 and whole[:1000] == b"C" * 1000 and whole[1004:1008] == b"free"
    for start, end in ((0, 1), (995, 1010), (1003, 1009), (4000, 5000)):
        assert b"".join([piece async for piece in body.chunks(start, end, 7)]) == whole[start:end]
    assert ServedBody.build(b"C" * 1000, 1004).total == 1000  # too small to hold a box: unpadded


def test_cache_encodes_once_and_leaves_no_temp_files(tmp_path: Path) -> None:
    cache = VideoCache(tmp_path)
    try:
        spec = VideoSpec(320, 180, 4, audio=False)
        first = cache.ensure(spec)
        stamp = first.stat().st_mtime_ns
        assert cache.ensure(spec) == first and first.stat().st_mtime_ns == stamp
        assert [p.name for p in tmp_path.iterdir()] == [spec.file_name]
    finally:
        cache.close()


@pytest.mark.parametrize(
    ("name", "kind"), [("sample.png", "png"), ("sample.jpg", "jpeg"), ("sample.webp", "webp")]
)
async def test_sample_images_are_what_they_claim(sim: SimulatorHandle, name: str, kind: str) -> None:
    async with httpx.AsyncClient(verify=sim.ssl_context()) as http:
        response = await http.get(sim.image_url(name))
    assert response.status_code == 200 and sniff_image(response.content) == kind
    with av.open(io.BytesIO(response.content), "r") as container:  # a decoder accepts it
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (64, 48)


def test_big_and_fake_images() -> None:
    big, fake = sample_image("big.png"), sample_image("fake.png")
    assert big is not None and len(big[1]) > 10 * 1024 * 1024 and sniff_image(big[1]) == "png"
    assert fake is not None and sniff_image(fake[1]) is None
    assert sample_image("nope.gif") is None
