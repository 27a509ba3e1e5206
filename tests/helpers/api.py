"""Helpers for the API and netguard tests: the API served by real uvicorn over HTTPS in a thread
of its own, a real HTTPS image server, a steerable stand-in for the provider at the activity
boundary, and a resolver tests can point names with.

The workflow under test is the real `VideoGenerationWorkflow` on the real Temporal dev server;
only its four activities are replaced (by `FakeProvider`), so a test decides exactly when a
provider task ends and the API's behaviour at each stage is deterministic.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from pydantic import SecretStr
from starlette.types import ASGIApp
from temporalio import activity
from temporalio.client import Client

from activities.provider import ProviderActivities
from activities.rehost import RehostActivities
from api.app import create_app
from api.config import ApiConfig
from api.server import uvicorn_config
from devstack.testbed import TESTBED_ENCRYPTION_KEYS
from devstack.tls import TLSFiles
from gptimage2 import ProviderTask, Usage
from netguard import system_resolver, system_resolver_sync
from settings import DEV_ENVIRONMENT, Settings
from simulator.testing import ServerThread as SimServerThread
from worker import build_worker
from workflows.models import CreateTaskInput, OutputObject, RehostInput

LOOPBACK = "127.0.0.1"
TENANT_KEYS = {"demo": "demo-secret-key-0001", "acme": "acme-secret-key-0002"}
CALLBACK_SECRET = "api-tests-callback-secret"


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TENANT_KEYS[tenant]}"}


def api_settings(temporal_address: str, task_queue: str, tls: TLSFiles, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "temporal_address": temporal_address,
        "task_queue": task_queue,
        "api_keys": SecretStr(",".join(f"{tenant}:{key}" for tenant, key in TENANT_KEYS.items())),
        "callback_secret": SecretStr(CALLBACK_SECRET),
        # The test image server runs on "localhost"; 127.0.0.1 stays forbidden, so a redirect
        # from the allowed name to the address is still caught.
        "allowed_private_hosts": ["localhost"],
        "gptimage2_ca_file": str(tls.ca),
        "environment": DEV_ENVIRONMENT,
        "history_encryption_keys": TESTBED_ENCRYPTION_KEYS,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


class ServerThread(SimServerThread):
    """uvicorn configured as `python -m api` configures it, on a socket bound before the thread
    starts, so clients can connect at once; startup is awaited through the lifespan."""

    def __init__(self, app: ASGIApp, *, tls: TLSFiles | None, config: ApiConfig | None = None) -> None:
        def configure(wrapped: ASGIApp, port: int) -> uvicorn.Config:
            return uvicorn_config(
                wrapped,  # type: ignore[arg-type]
                host=LOOPBACK,
                port=port,
                tls_cert=tls.cert if tls else None,
                tls_key=tls.key if tls else None,
                config=config,
                log_level="warning",
            )

        super().__init__(
            app,
            certfile=str(tls.cert) if tls else None,
            keyfile=str(tls.key) if tls else None,
            name="api",
            configure=configure,
        )

    def start(self, timeout: float = 15.0) -> ServerThread:  # type: ignore[override]
        super().start(timeout)
        return self


@contextmanager
def serving(app: ASGIApp, *, tls: TLSFiles | None, config: ApiConfig | None = None) -> Iterator[ServerThread]:
    server = ServerThread(app, tls=tls, config=config).start()
    try:
        yield server
    finally:
        server.stop()


# ---- the provider, at the activity boundary ------------------------------------------------


class FakeProvider:
    """Activities named as the real ones (`create_task`, `get_task`, `cancel_task`,
    `rehost_result`). Tasks stay `processing` until a test ends them."""

    def __init__(self) -> None:
        self.tasks: dict[str, ProviderTask] = {}
        self.creates: dict[str, int] = {}  # workflow id -> create calls
        self.task_of: dict[str, str] = {}  # workflow id -> latest task id
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        async with self._condition():
            self._condition().notify_all()

    @activity.defn(name=ProviderActivities.create_task.__name__)
    async def create_task(self, request: CreateTaskInput) -> ProviderTask:
        task = ProviderTask(
            id=f"task-fake-{uuid.uuid4().hex[:12]}",
            model=request.params.model,
            created=int(time.time()),
            status="processing",
            progress=10,
            usage=Usage(credits_reserved=float(request.params.duration * 10)),
        )
        self.tasks[task.id] = task
        self.creates[request.workflow_id] = self.creates.get(request.workflow_id, 0) + 1
        self.task_of[request.workflow_id] = task.id
        await self._notify()
        return task

    @activity.defn(name=ProviderActivities.get_task.__name__)
    async def get_task(self, task_id: str) -> ProviderTask:
        return self.tasks[task_id]

    @activity.defn(name=ProviderActivities.cancel_task.__name__)
    async def cancel_task(self, task_id: str) -> ProviderTask | None:
        task = self.tasks[task_id]
        self.tasks[task_id] = task.model_copy(update={"status": "cancelled"})
        return self.tasks[task_id]

    @activity.defn(name=RehostActivities.rehost_result.__name__)
    async def rehost_result(self, request: RehostInput) -> OutputObject:
        key = f"{request.tenant}/{request.workflow_id}/{request.phase}-{request.index}.mp4"
        return OutputObject(
            url=f"https://cdn.invalid/{key}",
            object_key=key,
            sha256="0" * 64,
            size_bytes=1024,
            content_type="video/mp4",
        )

    def activities(self) -> list[Any]:
        return [self.create_task, self.get_task, self.cancel_task, self.rehost_result]

    def complete(self, task_id: str) -> None:
        task = self.tasks[task_id]
        self.tasks[task_id] = task.model_copy(
            update={
                "status": "completed",
                "progress": 100,
                "results": ["https://provider.invalid/video.mp4"],
                "completed_at": int(time.time()),
            }
        )

    async def wait_for_task(self, workflow_id: str, within: float = 15.0) -> str:
        async with asyncio.timeout(within), self._condition():
            await self._condition().wait_for(lambda: workflow_id in self.task_of)
        return self.task_of[workflow_id]


@asynccontextmanager
async def stand_in_worker(client: Client, provider: FakeProvider, name: str) -> AsyncIterator[str]:
    """A worker running the real workflow with `provider`'s activities, on a task queue of its
    own (yielded)."""
    task_queue = f"{name}-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, task_queue, provider.activities()):
        yield task_queue


@contextmanager
def api_serving(client: Client, task_queue: str, tls: TLSFiles, config: ApiConfig) -> Iterator[ServerThread]:
    """The API for `task_queue`, served over HTTPS as `python -m api` serves it."""
    settings = api_settings(temporal_address(client), task_queue, tls)
    with serving(create_app(settings, config=config), tls=tls, config=config) as server:
        yield server


# ---- DNS a test controls -------------------------------------------------------------------


@dataclass
class FakeDns:
    """Names tests point anywhere; every other name goes to the system resolver (so the real
    resolution path is still the one exercised for `localhost`)."""

    records: dict[str, list[str]] = field(default_factory=dict)

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        if host in self.records:
            return self.records[host]
        return await system_resolver(host, port)


@dataclass
class RebindingDns:
    """A blocking resolver whose answer for a name changes from one lookup to the next (the
    DNS rebinding attack): lookup N of a name gets `answers[name][N]`, the last one repeating.
    Every other name goes to the system resolver. `lookups` counts calls per name."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: Counter[str] = field(default_factory=Counter)

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups[host] += 1
        if host in self.answers:
            sequence = self.answers[host]
            return sequence[min(self.lookups[host], len(sequence)) - 1]
        return system_resolver_sync(host, port)


# ---- a real HTTPS server with images, redirects and liars ----------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 200
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200
WEBP = b"RIFF\x00\x01\x00\x00WEBPVP8 " + b"\x00" * 200
HTML = b"<!doctype html><html><body>not an image</body></html>" + b" " * 100
OVER_LIMIT = 10 * 1024 * 1024 + 1


class ImageServer:
    """HTTPS on 127.0.0.1, reached as https://localhost:PORT/... Routes:

    /ok.png /ok.jpg /ok.webp  small images, Range honoured (206 + Content-Range)
    /fake.png                  HTML bytes served as image/png
    /huge.png                  claims 10 MB + 1 byte in Content-Range
    /huge-norange.png          ignores Range, Content-Length 10 MB + 1
    /missing.png               404
    /to?url=U                  302 to U
    /hops/N                    302 to /hops/N-1; /hops/0 redirects to the PNG (N+1 hops)
    """

    def __init__(self, tls: TLSFiles) -> None:
        handler = self._handler()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="images", daemon=True)
        self.requests: list[str] = []

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                path, _, query = self.path.partition("?")
                images = {"/ok.png": PNG, "/ok.jpg": JPEG, "/ok.webp": WEBP, "/fake.png": HTML}
                if path in images:
                    self._ranged(images[path], "image/png")
                elif path == "/huge.png":
                    self.send_response(206)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Range", f"bytes 0-31/{OVER_LIMIT}")
                    self.send_header("Content-Length", "32")
                    self.end_headers()
                    self.wfile.write(PNG[:32])
                elif path == "/huge-norange.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(OVER_LIMIT))
                    self.end_headers()
                    self.wfile.write(PNG)  # the client stops reading long before the rest
                elif path == "/to":
                    self._redirect(query.removeprefix("url="))
                elif path.startswith("/hops/"):
                    left = int(path.rsplit("/", 1)[1])
                    self._redirect(f"/hops/{left - 1}" if left > 0 else "/ok.png")
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _ranged(self, body: bytes, content_type: str) -> None:
                wanted = self.headers.get("Range", "")
                if wanted.startswith("bytes=0-"):
                    end = min(int(wanted.removeprefix("bytes=0-") or len(body) - 1), len(body) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{end}/{len(body)}")
                    part = body[: end + 1]
                else:
                    self.send_response(200)
                    part = body
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(part)

        return Handler


async def wait_for(predicate: Any, *, within: float = 10.0, every: float = 0.1) -> Any:
    """Polls an async predicate until it returns something truthy. Only for state that is
    eventually consistent by design (Temporal visibility), where there is no event to await."""
    async with asyncio.timeout(within):
        while True:
            result = await predicate()
            if result:
                return result
            await asyncio.sleep(every)


def temporal_address(client: Client) -> str:
    return client.service_client.config.target_host
