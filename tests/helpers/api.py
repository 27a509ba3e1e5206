"""Helpers for the API and netguard tests: the API served by real uvicorn over HTTPS in a thread
of its own (`devstack.server_thread.ServerThread`), a real HTTPS image server, a resolver tests
can point names with, and the requests and readings the tests in tests/api/ share.

The workflow under test is the real `VideoGenerationWorkflow` on the real Temporal dev server;
only its four activities are replaced (by `tests.helpers.fake_provider.FakeProvider`), so a test
decides exactly when a provider task ends and the API's behaviour at each stage is deterministic.
"""

from __future__ import annotations

import ssl
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr
from starlette.types import ASGIApp
from temporalio.client import Client

from api.app import create_app
from api.config import ApiConfig
from api.server import uvicorn_config
from devstack.ports import LOOPBACK
from devstack.server_thread import ServerThread
from devstack.testbed import TESTBED_ENCRYPTION_KEYS
from devstack.tls import TLSFiles
from netguard import system_resolver, system_resolver_sync
from settings import DEV_ENVIRONMENT, Settings
from tests.helpers.fake_provider import FakeProvider
from worker import build_worker
from workflows.callback_token import mint_callback_token
from workflows.generation import VideoGenerationWorkflow
from workflows.ids import generation_workflow_id
from workflows.models import GenerationView

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


def api_server(app: ASGIApp, *, tls: TLSFiles | None, config: ApiConfig | None = None) -> ServerThread:
    """The API's app served with the uvicorn settings `python -m api` uses (not yet started)."""

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

    certfile, keyfile = (str(tls.cert), str(tls.key)) if tls else (None, None)
    return ServerThread(app, certfile=certfile, keyfile=keyfile, name="api", configure=configure)


@contextmanager
def serving(app: ASGIApp, *, tls: TLSFiles | None, config: ApiConfig | None = None) -> Iterator[ServerThread]:
    server = api_server(app, tls=tls, config=config).start()
    try:
        yield server
    finally:
        server.stop()


# ---- the provider, at the activity boundary ------------------------------------------------


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


def temporal_address(client: Client) -> str:
    return client.service_client.config.target_host


# ---- the API tests' requests and readings --------------------------------------------------

GENERATION_FIELDS = {
    "id", "status", "stage", "progress", "mode", "failure_category", "failure_message", "guidance",
    "outputs", "credits", "attempts", "provider_task_ids", "created_at", "updated_at",
}  # fmt: skip
ROOMY = ApiConfig(rate_limit_per_second=10_000, rate_limit_burst=10_000)


def body(**fields: Any) -> dict[str, Any]:
    return {"user_id": "user-1", "prompt": f"a lighthouse at dusk {uuid.uuid4().hex[:8]}", **fields}


async def create(
    http: httpx.AsyncClient, payload: dict[str, Any], *, key: str | None = None, tenant: str = "demo"
) -> httpx.Response:
    headers = {**auth(tenant), "Idempotency-Key": key or uuid.uuid4().hex}
    return await http.post("/v1/generations", json=payload, headers=headers)


ApiWith = Callable[[ApiConfig], AbstractAsyncContextManager[httpx.AsyncClient]]


async def started(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await create(http, body(**fields))
    assert response.status_code == 202, response.text
    generation: dict[str, Any] = response.json()
    return generation


async def query_view(temporal: Client, workflow_id: str) -> GenerationView:
    handle = temporal.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)
    return await handle.query(VideoGenerationWorkflow.view)


async def assert_never_started(http: httpx.AsyncClient, tenant: str, user_id: str, key: str) -> None:
    workflow_id = generation_workflow_id(tenant, user_id, key)
    response = await http.get(f"/v1/generations/{workflow_id}", headers=auth(tenant))
    assert response.status_code == 404, response.text


def field_names(response: httpx.Response) -> set[str]:
    return {f["field"] for f in response.json()["error"]["fields"]}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


def callback_path(workflow_id: str, secret: str = CALLBACK_SECRET) -> str:
    return f"/callbacks/gptimage2/{mint_callback_token(secret, workflow_id)}"
