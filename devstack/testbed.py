"""The whole product wired together in one process, on servers that are already running: the
API over HTTPS (it receives the simulator's callbacks) and a worker, configured for a given
Temporal, SeaweedFS and provider simulator. Shared by the test suite and the benchmarks, so
both measure exactly what `make up` runs."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from minio import Minio
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.converter import DataConverter

from devstack.ports import free_port
from devstack.seaweed import SeaweedServer
from devstack.state import DEFAULTS
from devstack.tls import TLSFiles
from gptimage2 import GPTImage2Client, Mode, Quality, VideoParams
from settings import DEV_ENVIRONMENT, Settings
from temporal_client import data_converter
from workflows.models import RehostInput

# Tests and benchmarks encrypt history with a key of their own, not the dev default; a fixed
# one, so histories recorded from tests (tests/histories) replay in later runs.
TESTBED_ENCRYPTION_KEYS = SecretStr(
    "testbed:" + base64.b64encode(b"testbed-history-key-not-secret!!").decode()
)


@dataclass(frozen=True)
class Testbed:
    __test__ = False  # not a test class, whatever pytest guesses from the name
    client: Client
    settings: Settings
    sim: Any  # simulator.testing's handle: base_url, api_key, tasks(), stats(), advance_clock()
    s3: SeaweedServer
    tls: TLSFiles
    api_url: str
    task_queue: str

    def provider(self) -> GPTImage2Client:
        from worker import make_provider

        return make_provider(self.settings)

    def with_task_queue(self, task_queue: str) -> Testbed:
        return replace(
            self, task_queue=task_queue, settings=self.settings.model_copy(update={"task_queue": task_queue})
        )

    def worker_env(self) -> dict[str, str]:
        """The environment a separate `python worker.py` process needs to join this testbed."""
        return settings_env(self.settings)


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as the environment variables `Settings` reads them from."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        value = value.get_secret_value() if isinstance(value, SecretStr) else value
        env[name.upper()] = ",".join(value) if isinstance(value, list) else str(value)
    return env


def rehost_job(url: str, task_id: str = "task-unified-1-00000000") -> RehostInput:
    """A re-host of `url` for a generation of its own (so its object key is the caller's alone),
    for driving `rehost_result` directly."""
    return RehostInput(
        workflow_id=f"gen-demo-{uuid.uuid4().hex}",
        tenant="demo",
        user_id="user-1",
        phase="final",
        index=0,
        url=url,
        task_id=task_id,
        prompt_hash="0" * 16,
        mode=Mode.TEXT_TO_VIDEO,
        params=VideoParams(prompt="", quality=Quality.P480, duration=4, generate_audio=False),
        credits=12,
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )


def unfinished_uploads(store: Minio, bucket: str, key: str) -> list[str]:
    """Ids of the multipart uploads of `key` that were neither completed nor aborted."""
    listing = store._list_multipart_uploads(bucket, prefix=key)
    return [u.upload_id for u in listing.uploads if u.object_name == key and u.upload_id]


def stored_part_bytes(store: Minio, bucket: str, key: str) -> int:
    """Bytes S3 acknowledged in `key`'s unfinished upload (0 when there is none)."""
    uploads = unfinished_uploads(store, bucket, key)
    if not uploads:
        return 0
    return sum(part.size or 0 for part in store._list_parts(bucket, key, uploads[0]).parts)


def testbed_settings(
    temporal_address: str, sim: Any, s3: SeaweedServer, tls: TLSFiles, api_url: str, task_queue: str
) -> Settings:
    return Settings(
        environment=DEV_ENVIRONMENT,
        temporal_address=temporal_address,
        task_queue=task_queue,
        gptimage2_base_url=sim.base_url,
        gptimage2_api_key=SecretStr(sim.api_key),
        gptimage2_ca_file=str(tls.ca),
        result_hosts=["127.0.0.1"],
        callback_base_url=api_url,
        callback_secret=SecretStr("testbed-callback-secret-" + uuid.uuid4().hex),
        s3_endpoint=s3.endpoint,
        s3_access_key=SecretStr(s3.access_key),
        s3_secret_key=SecretStr(s3.secret_key),
        s3_bucket=s3.bucket,
        s3_secure=False,
        api_keys=DEFAULTS.api_keys,
        allowed_private_hosts=["127.0.0.1", "localhost"],
        history_encryption_keys=TESTBED_ENCRYPTION_KEYS,
        ops_api_key=SecretStr("testbed-ops-key-" + uuid.uuid4().hex),
        admin_api_key=SecretStr("testbed-admin-key-" + uuid.uuid4().hex),
        # A `python worker.py` joining a testbed serves no metrics (a fixed port would clash).
        worker_metrics_bind="",
        _env_file=None,
    )


def converter_for_testbeds() -> DataConverter:
    """The converter of every `testbed_settings`, for clients made before those settings
    (a session's Temporal test server)."""
    return data_converter(
        Settings(environment=DEV_ENVIRONMENT, history_encryption_keys=TESTBED_ENCRYPTION_KEYS, _env_file=None)
    )


@asynccontextmanager
async def serve_api(
    settings: Settings, client: Client, tls: TLSFiles, port: int, *, config: Any = None
) -> AsyncIterator[None]:
    """`config`: the API's own knobs (an `api.config.ApiConfig`), its defaults when None."""
    from api.app import create_app
    from api.config import ApiConfig
    from api.server import uvicorn_config

    app = create_app(settings, temporal_client=client, config=config)
    server = uvicorn.Server(
        uvicorn_config(
            app,
            port=port,
            tls_cert=tls.cert,
            tls_key=tls.key,
            log_level="warning",
            # Callers' idle pooled connections would hold the stop for the whole grace.
            config=ApiConfig(shutdown_grace_seconds=1),
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("the API stopped while starting")
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await serving


@asynccontextmanager
async def running_testbed(
    client: Client, sim: Any, s3: SeaweedServer, tls: TLSFiles, *, worker: bool = True
) -> AsyncIterator[Testbed]:
    from worker import make_provider, product_worker

    address = client.service_client.config.target_host
    api_port = free_port()
    api_url = f"https://127.0.0.1:{api_port}"
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    settings = testbed_settings(address, sim, s3, tls, api_url, task_queue)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(serve_api(settings, client, tls, api_port))
        if worker:
            provider = await stack.enter_async_context(make_provider(settings))
            executor = stack.enter_context(ThreadPoolExecutor(max_workers=16))
            await stack.enter_async_context(
                product_worker(client, settings, provider, task_queue=task_queue, executor=executor)
            )
        yield Testbed(client, settings, sim, s3, tls, api_url, task_queue)
