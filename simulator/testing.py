"""Run the simulator (and an HTTPS callback receiver) inside a test process.

Each server runs uvicorn in its own thread with its own event loop, on a socket bound to a free
127.0.0.1 port before the thread starts, so neither an encode nor a busy test loop stalls the
other. Both context managers work with `with` and `async with`.

Example::

    with running_simulator(time_scale=1000) as sim, running_callback_receiver(sim.ca) as receiver:
        async with sim.client() as client:
            task = await client.create_task({"prompt": "a cat #gen=5", "callback_url": receiver.url("t1")})
        sim.wait(task_id=task.id)
        receiver.wait_for(1, path="t1")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx
import trustme
from starlette.types import Receive, Scope, Send

from devstack.ports import LOOPBACK
from devstack.server_thread import ServerThread
from gptimage2 import GPTImage2Client

from .app import create_app
from .config import FaultConfig, SimulatorSettings, default_cache_dir


def _tls_files(directory: Path, ca: trustme.CA) -> tuple[str, str, str]:
    """(ca, cert chain, key) PEM files for 127.0.0.1 and localhost, issued by `ca`."""
    leaf = ca.issue_cert(LOOPBACK, "localhost")
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server-key.pem",
    )
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    return str(ca_file), str(cert_file), str(key_file)


class SimulatorError(RuntimeError):
    pass


@dataclass
class SimulatorHandle:
    """What a test needs of a running simulator. The `a`-prefixed methods are the same calls for
    async tests (run in a worker thread, so the test's loop is never blocked)."""

    base_url: str
    api_key: str = field(repr=False)
    ca_file: str | None
    ca: trustme.CA | None = field(repr=False)
    _http: httpx.Client = field(repr=False)

    def client(self, **kwargs: Any) -> GPTImage2Client:
        verify = kwargs.pop("verify", self.ca_file if self.ca_file else True)
        return GPTImage2Client(self.api_key, self.base_url, verify=verify, **kwargs)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this simulator (and receivers issued by the same CA)."""
        return (
            ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()
        )

    def image_url(self, name: str) -> str:
        return f"{self.base_url}/_sim/images/{name}"

    def _call(self, method: str, path: str, body: Any = None, ok: Sequence[int] = (200,)) -> Any:
        response = self._http.request(method, path, json=body)
        if response.status_code not in ok:
            raise SimulatorError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/stats"))

    def config(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/config"))

    def set_config(self, **patch: Any) -> dict[str, Any]:
        """PATCH /_sim/config: merges `patch` into the fault mix."""
        return dict(self._call("PATCH", "/_sim/config", patch))

    def reset_config(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """PUT /_sim/config: the defaults, or exactly `config`."""
        return dict(self._call("PUT", "/_sim/config", config or {}))

    def advance_clock(self, seconds: float) -> float:
        return float(self._call("POST", "/_sim/clock/advance", {"seconds": seconds})["now"])

    def forget_task(self, task_id: str) -> None:
        """DELETE /_sim/tasks/{id}: the provider forgets the task (later calls about it: 404)."""
        self._call("DELETE", f"/_sim/tasks/{task_id}")

    def refuse_task(self, task_id: str, status: int) -> None:
        """Later API calls about the task answer `status` (401: key revoked, 403: forbidden)."""
        self._call("POST", f"/_sim/tasks/{task_id}/refuse", {"status": status})

    def tasks(self, prompt_sha256: str | None = None) -> list[dict[str, Any]]:
        params = {"prompt_sha256": prompt_sha256} if prompt_sha256 else None
        response = self._http.get("/_sim/tasks", params=params)
        response.raise_for_status()
        return list(response.json())

    def wait(
        self, *, task_id: str | None = None, within: float = 10.0, **at_least: int | float
    ) -> dict[str, Any]:
        """Blocks until the task has ended (billing settled) and each counter is >= its value;
        returns the stats. Raises TimeoutError after `within` seconds."""
        body = {"timeout": within, "task_id": task_id, "stats": at_least}
        response = self._http.post("/_sim/wait", json=body, timeout=within + 10)
        if response.status_code == 408:
            raise TimeoutError(f"simulator wait {body} timed out; stats: {response.json()['stats']}")
        if response.status_code != 200:
            raise SimulatorError(f"/_sim/wait -> {response.status_code}: {response.text[:500]}")
        return dict(response.json()["stats"])

    async def astats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.stats)

    async def aset_config(self, **patch: Any) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.set_config(**patch))

    async def aadvance_clock(self, seconds: float) -> float:
        return await asyncio.to_thread(self.advance_clock, seconds)

    async def aforget_task(self, task_id: str) -> None:
        await asyncio.to_thread(self.forget_task, task_id)

    async def arefuse_task(self, task_id: str, status: int) -> None:
        await asyncio.to_thread(self.refuse_task, task_id, status)

    async def atasks(self, prompt_sha256: str | None = None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.tasks, prompt_sha256)

    async def await_(
        self, *, task_id: str | None = None, within: float = 10.0, **at_least: int | float
    ) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.wait(task_id=task_id, within=within, **at_least))


class _Managed:
    """Sync and async context manager around blocking `_start` / `_stop`."""

    def _start(self) -> Any:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self._start()

    def __exit__(self, *exc: object) -> None:
        self._stop()

    async def __aenter__(self) -> Any:
        return await asyncio.to_thread(self._start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self._stop)


class TLSMaterial(Protocol):
    """PEM files for a server: the shape of `devstack.tls.TLSFiles`."""

    @property
    def ca(self) -> Path: ...
    @property
    def cert(self) -> Path: ...
    @property
    def key(self) -> Path: ...


class running_simulator(_Managed):
    """Starts a simulator on a free loopback port; yields a `SimulatorHandle`.

    `tls=True` (default): certificates from `ca` (a new trustme CA if None) unless `cert_file`
    and `key_file` are given (then pass `ca_file` to verify them). `tls=<TLSFiles>`: serve that
    certificate, trust that CA. `tls=False`: plain HTTP. The simulator trusts the CA for
    callbacks too, so a receiver with a certificate from the same CA is accepted.
    """

    def __init__(
        self,
        *,
        time_scale: float = 100.0,
        tls: bool | TLSMaterial = True,
        ca: trustme.CA | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        allow_private: bool = True,
        config: FaultConfig | dict[str, Any] | None = None,
        cache_dir: str | Path | None = None,
        api_key: str = "sim-key",
        seed: int | None = 0,
        public_base_url: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if not isinstance(tls, bool):
            ca_file, cert_file, key_file = str(tls.ca), str(tls.cert), str(tls.key)
        self._tls = bool(tls)
        self._ca = ca
        self._ca_file, self._cert_file, self._key_file = ca_file, cert_file, key_file
        faults = config if isinstance(config, FaultConfig) else FaultConfig.model_validate(config or {})
        self._settings = SimulatorSettings(
            api_key=api_key,
            time_scale=time_scale,
            allow_private=allow_private,
            callback_cafile=ca_file,
            public_base_url=public_base_url,
            seed=seed,
            cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(),
            faults=faults,
        )
        self._startup_timeout = startup_timeout
        self._server: ServerThread | None = None
        self._tmp: str | None = None
        self._http: httpx.Client | None = None

    def __enter__(self) -> SimulatorHandle:
        return self._start()

    async def __aenter__(self) -> SimulatorHandle:
        return await asyncio.to_thread(self._start)

    def _start(self) -> SimulatorHandle:
        ca, ca_file, cert_file, key_file = self._ca, self._ca_file, self._cert_file, self._key_file
        if self._tls and not (cert_file and key_file):
            ca = ca or trustme.CA()
            self._tmp = tempfile.mkdtemp(prefix="sim-tls-")
            ca_file, cert_file, key_file = _tls_files(Path(self._tmp), ca)
            # Trust the same CA for callbacks, so receivers issued by it are accepted.
            self._settings.callback_cafile = self._settings.callback_cafile or ca_file
        self._server = ServerThread(
            create_app(self._settings),
            certfile=cert_file if self._tls else None,
            keyfile=key_file if self._tls else None,
            name="gptimage2-simulator",
        )
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if self._tls and ca_file else True
        )
        try:
            self._server.start(self._startup_timeout)
            self._http = httpx.Client(base_url=self._server.base_url, verify=verify, timeout=30.0)
            # "Waits until it answers": one real round trip through TLS and routing.
            self._http.get("/_sim/health").raise_for_status()
        except BaseException:
            self._stop()
            raise
        return SimulatorHandle(
            self._server.base_url, self._settings.api_key, ca_file if self._tls else None, ca, self._http
        )

    def _stop(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._server is not None:
            self._server.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


# -- callback receiver ------------------------------------------------------------------------------
Answer = int | Literal["hang"]


@dataclass(frozen=True)
class Delivery:
    path: str
    body: bytes
    status: int | Literal["hang"]
    received_at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)


class CallbackReceiver:
    """An HTTPS endpoint that records every POST and answers as programmed per path.

    `program(path, [500, 500])` makes the first two attempts on `path` fail, later ones 200;
    `"hang"` holds the response until the receiver stops (to exercise the sender's timeout)."""

    def __init__(self) -> None:
        self.base_url = ""
        self._deliveries: list[Delivery] = []
        self._programs: dict[str, list[Answer]] = {}
        self._condition = threading.Condition()
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def program(self, path: str, answers: Sequence[Answer]) -> None:
        with self._condition:
            self._programs["/" + path.lstrip("/")] = list(answers)

    def deliveries(self, path: str | None = None) -> list[Delivery]:
        wanted = None if path is None else "/" + path.lstrip("/")
        with self._condition:
            return [d for d in self._deliveries if wanted is None or d.path == wanted]

    def wait_for(self, count: int, path: str | None = None, within: float = 10.0) -> list[Delivery]:
        """Blocks until at least `count` deliveries (on `path`) arrived; TimeoutError otherwise."""
        wanted = None if path is None else "/" + path.lstrip("/")

        def matching() -> list[Delivery]:
            return [d for d in self._deliveries if wanted is None or d.path == wanted]

        with self._condition:
            if not self._condition.wait_for(lambda: len(matching()) >= count, within):
                raise TimeoutError(f"{len(matching())} of {count} callbacks on {path!r} after {within} s")
            return matching()

    async def await_for(self, count: int, path: str | None = None, within: float = 10.0) -> list[Delivery]:
        return await asyncio.to_thread(self.wait_for, count, path, within)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._loop, self._release = asyncio.get_running_loop(), asyncio.Event()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        with self._condition:
            program = self._programs.get(path)
            answer: Answer = program.pop(0) if program else 200
            self._deliveries.append(Delivery(path, bytes(body), answer, time.monotonic()))
            self._condition.notify_all()
        if answer == "hang":
            assert self._release is not None
            await self._release.wait()
            answer = 503
        await send({"type": "http.response.start", "status": answer, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def release_hung(self) -> None:
        if self._loop is not None and self._release is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._release.set)


class running_callback_receiver(_Managed):
    """An HTTPS callback receiver on a free loopback port with a certificate from `ca`."""

    def __init__(self, ca: trustme.CA, startup_timeout: float = 30.0) -> None:
        self._ca = ca
        self._timeout = startup_timeout
        self._server: ServerThread | None = None
        self._tmp: str | None = None
        self._receiver = CallbackReceiver()

    def __enter__(self) -> CallbackReceiver:
        return self._start()

    async def __aenter__(self) -> CallbackReceiver:
        return await asyncio.to_thread(self._start)

    def _start(self) -> CallbackReceiver:
        self._tmp = tempfile.mkdtemp(prefix="sim-receiver-")
        _, cert_file, key_file = _tls_files(Path(self._tmp), self._ca)
        self._server = ServerThread(
            self._receiver, certfile=cert_file, keyfile=key_file, name="callback-receiver"
        )
        try:
            self._server.start(self._timeout)
        except BaseException:
            self._stop()
            raise
        self._receiver.base_url = self._server.base_url
        return self._receiver

    def _stop(self) -> None:
        self._receiver.release_hung()
        if self._server is not None:
            self._server.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


__all__ = [
    "CallbackReceiver",
    "Delivery",
    "SimulatorError",
    "SimulatorHandle",
    "running_callback_receiver",
    "running_simulator",
]
