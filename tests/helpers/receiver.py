"""A webhook receiver for tests: a real HTTP server on a free loopback port that verifies every
delivery with the `standardwebhooks` library (a verifier nobody here wrote) and answers with
whatever status the test sets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Delivery:
    webhook_id: str
    event: str
    payload: dict[str, Any]
    status: int  # what the receiver answered
    verified: bool
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    secrets: list[str]
    port: int = 0
    status: int = 200  # what to answer; 503 stands for "down"
    location: str | None = None  # with a 3xx status
    delay: float = 0.0  # seconds before answering (a slow or hung receiver)
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def received(self, status: int | None = None) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if status is None or d.status == status]

    def accepted_events(self) -> list[str]:
        """The logical events accepted (2xx), one per webhook-id."""
        return list({d.webhook_id: d.event for d in self.received() if 200 <= d.status < 300}.values())

    def verify(self, body: bytes, headers: dict[str, str]) -> Any:
        """The payload, if any of the receiver's secrets verifies it; else raises."""
        errors = []
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(body, headers)
            except Exception as exc:
                errors.append(exc)
        raise errors[-1]


@contextmanager
def receiving(*secrets: str) -> Iterator[Receiver]:
    receiver = Receiver(list(secrets))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            time.sleep(receiver.delay)  # a slow receiver (this handler's own thread)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload, verified = receiver.verify(body, headers), True
            except Exception:
                payload, verified = json.loads(body or b"{}"), False
            status = receiver.status if verified else 400
            with receiver.lock:
                receiver.deliveries.append(
                    Delivery(
                        headers.get("webhook-id", ""),
                        payload.get("type", ""),
                        payload,
                        status,
                        verified,
                        headers,
                        body,
                    )
                )
            self.send_response(status)
            if receiver.location:
                self.send_header("Location", receiver.location)
            reply = b"ok" if status < 300 else b"x" * 100_000  # a huge error page: read at most a few KB
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    # A short poll interval: shutdown() waits up to one.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
