"""uvicorn serving an ASGI app in a thread of its own, for tests and benchmarks.

The socket is bound to a free loopback port and listening before the thread starts, so clients
may connect at once (they queue in the backlog), and `start()` returns once the app's lifespan
startup has completed (or raises with the reason it failed). The simulator's test handle, its
callback receiver and the API tests all serve through this one class.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devstack.ports import LOOPBACK


class ServerThread:
    """uvicorn serving `app` on a pre-bound loopback socket in a thread of its own."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        certfile: str | None,
        keyfile: str | None,
        name: str,
        configure: Callable[[ASGIApp, int], uvicorn.Config] | None = None,
    ) -> None:
        """`configure(app, port)` builds the uvicorn config when the app has its own (the API)."""
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are
        # TCP, and without it every small response waits ~40 ms for a delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((LOOPBACK, 0))
        # Listening before uvicorn starts: early clients queue in the backlog instead of failing.
        self._socket.listen(128)
        self.port: int = self._socket.getsockname()[1]
        self.scheme = "https" if certfile else "http"
        self._ready = threading.Event()
        self._startup_error: str | None = None
        if configure is None:
            config = uvicorn.Config(
                self._watch_lifespan(app),
                log_level="warning",
                access_log=False,
                lifespan="on",
                ssl_certfile=certfile,
                ssl_keyfile=keyfile,
            )
        else:
            config = configure(self._watch_lifespan(app), self.port)
        config.timeout_graceful_shutdown = 2
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def _watch_lifespan(self, app: ASGIApp) -> ASGIApp:
        async def watched(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "lifespan":
                await app(scope, receive, send)
                return

            async def tell(message: Message) -> None:
                if message["type"] == "lifespan.startup.failed":
                    self._startup_error = str(message.get("message", "startup failed"))
                await send(message)
                if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed"):
                    self._ready.set()

            await app(scope, receive, tell)

        return watched

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # surfaced by start()
            self._startup_error = self._startup_error or repr(exc)
        finally:
            self._ready.set()  # a server that died before startup must not leave start() waiting

    def start(self, timeout: float = 15.0) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"{self._thread.name} did not start within {timeout} s")
        if self._startup_error or not self._thread.is_alive():
            self.stop()
            raise RuntimeError(f"{self._thread.name} failed to start: {self._startup_error}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()
