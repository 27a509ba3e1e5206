"""`make demo`: one text-to-video generation through the HTTP API, as a backend service would.

Starts the stack if needed, submits with a per-checkout idempotency key (so running it again
shows the same generation instead of paying for a new one), follows it with a progress bar,
then checks the delivered object: downloaded from its re-hosted URL, sha256 and size as the
API reported, and a real MP4 with a video stream. Exits 0 only when all of that holds.
"""

from __future__ import annotations

import hashlib
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from devstack.stack import up
from devstack.state import DEFAULTS, StateDir, load_stack

# The demo tenant's key among Settings' development tenant keys (the dev stack's API_KEYS).
TENANT_KEY = next(key for key, tenant in DEFAULTS.tenant_keys().items() if tenant == "demo")
TERMINAL = ("delivered", "failed", "cancelled")
REQUEST = {
    "user_id": "demo-user",
    "prompt": 'A detective in the rain says: "Do not move." Neon reflections on the street.',
    "duration": 5,
    "quality": "720p",
    "aspect_ratio": "16:9",
    "generate_audio": True,
    "scenario": "talking_head",
}
POLL_INTERVAL = 0.5
BAR_WIDTH = 30


def idempotency_key(state: StateDir) -> str:
    """Stable per checkout: written once, reused by every later `make demo`."""
    try:
        key = state.demo_key.read_text().strip()
    except FileNotFoundError:
        key = ""
    if not key:
        key = f"demo-{secrets.token_hex(8)}"
        state.demo_key.write_text(key + "\n")
    return key


class ProgressLine:
    """A one-line progress bar on a terminal; one line per change elsewhere (CI logs)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last = ""

    def show(self, generation: dict[str, Any]) -> None:
        progress = max(0.0, min(100.0, float(generation.get("progress") or 0)))
        filled = round(BAR_WIDTH * progress / 100)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        text = f"[{bar}] {progress:5.1f}%  {generation.get('status')}: {generation.get('stage', '')}"
        if text == self._last:
            return
        self._last = text
        if self._tty:
            self._out.write("\r\033[K" + text)
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def done(self) -> None:
        if self._tty and self._last:
            self._out.write("\n")
            self._out.flush()


def verify_video(url: str, expected_sha256: str, expected_size: int, ca: Path) -> str:
    """Downloads url and checks hash, size and that it is an MP4 with a video stream.

    Returns a one-line description of the video; raises ValueError on any mismatch.
    """
    import av

    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "video.mp4"
        with httpx.stream("GET", url, verify=str(ca), timeout=60.0) as response, open(path, "wb") as sink:
            if response.status_code != 200:
                raise ValueError(f"download answered HTTP {response.status_code}")
            for chunk in response.iter_bytes(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                sink.write(chunk)
        if size != expected_size:
            raise ValueError(f"downloaded {size} bytes, the API reported {expected_size}")
        if digest.hexdigest() != expected_sha256:
            raise ValueError("downloaded bytes do not match the reported sha256")
        with av.open(str(path)) as container:
            if "mp4" not in container.format.name:
                raise ValueError(f"not an MP4 container ({container.format.name})")
            if not container.streams.video:
                raise ValueError("the file has no video stream")
            video = container.streams.video[0]
            seconds = float(container.duration or 0) / 1_000_000
            audio = "with audio" if container.streams.audio else "no audio"
            return f"{video.codec_context.name} {video.width}x{video.height}, {seconds:.1f} s, {audio}"


def demo(state: StateDir, out: TextIO = sys.stdout, timeout: float = 600.0) -> int:
    code = up(state, out)
    if code != 0:
        return code
    stack = load_stack(state)
    key = idempotency_key(state)
    ca = str(stack.tls.ca)
    headers = {"Authorization": f"Bearer {TENANT_KEY}"}
    with httpx.Client(base_url=stack.api_url, verify=ca, headers=headers, timeout=30.0) as client:
        response = client.post("/v1/generations", json=REQUEST, headers={"Idempotency-Key": key})
        if response.status_code not in (200, 201, 202):
            print(f"submit failed: HTTP {response.status_code} {response.text[:500]}", file=out)
            return 1
        generation: dict[str, Any] = response.json()
        generation_id = str(generation["id"])
        verb = "found existing" if response.status_code == 200 else "submitted"
        print(f"{verb} generation {generation_id} (Idempotency-Key {key})", file=out)
        ui_url = (
            f"{stack.temporal_ui_url}/namespaces/{stack.namespace}/workflows/{quote(generation_id, safe='')}"
        )
        print(f"Temporal Web UI: {ui_url}", file=out)

        bar = ProgressLine(out)
        deadline = time.monotonic() + timeout
        while True:
            bar.show(generation)
            if generation.get("status") in TERMINAL:
                break
            if time.monotonic() > deadline:
                bar.done()
                print(f"gave up after {timeout:.0f} s; the generation goes on in Temporal", file=out)
                return 1
            time.sleep(POLL_INTERVAL)
            polled = client.get(f"/v1/generations/{quote(generation_id, safe='')}")
            if polled.status_code == 200:
                generation = polled.json()
        bar.done()

    status = generation.get("status")
    if status != "delivered":
        print(f"generation {status}: {generation.get('failure_category')}", file=out)
        for label in ("failure_message", "guidance"):
            if generation.get(label):
                print(f"  {label}: {generation[label]}", file=out)
        return 1
    outputs = generation.get("outputs") or []
    if not outputs:
        print("delivered without outputs", file=out)
        return 1
    print(f"credits: {generation.get('credits')}  attempts: {generation.get('attempts')}", file=out)
    for output in outputs:
        print(f"video URL:  {output['url']}", file=out)
        print(f"object key: {output['object_key']}", file=out)
        print(f"sha256:     {output['sha256']} ({output['size_bytes']} bytes)", file=out)
        try:
            described = verify_video(output["url"], output["sha256"], int(output["size_bytes"]), stack.tls.ca)
        except (ValueError, httpx.HTTPError, OSError) as error:
            print(f"verification FAILED: {error}", file=out)
            return 1
        print(f"verified:   {described}", file=out)
    print(f"Temporal Web UI: {ui_url}", file=out)
    return 0
