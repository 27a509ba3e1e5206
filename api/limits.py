"""Request limits, enforced before any handler runs: sizes, and a request target that is text.

Headers: h11 (`h11_max_incomplete_event_size`) caps how much it buffers while a header block is
incomplete, but accepts a complete block of any size that arrives in one read; the declared
limit is therefore also checked here (431). Body: a declared Content-Length over the limit is
refused without reading; a chunked body is counted as it streams and cut off at the limit (413).

Path and query: both must percent-decode to UTF-8 (400). The server and Starlette decode them
with replacement characters, so a parameter would otherwise arrive as other text than was sent.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, FieldError


class BodyTooLarge(HTTPException):
    """Raised from `receive`; an HTTPException so that FastAPI's body parsing re-raises it
    untouched and the error handlers render it as the API's 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")


class RequestLimits:
    def __init__(self, app: ASGIApp, max_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
        if header_bytes > self.max_header_bytes:
            message = f"request headers are larger than {self.max_header_bytes} bytes"
            await ApiError(431, "request_headers_too_large", message).response()(scope, receive, send)
            return
        for part, raw in (("path", scope.get("raw_path") or b""), ("query", scope.get("query_string", b""))):
            if not _is_utf8(raw):
                message = f"the {part} is not UTF-8 after percent-decoding"
                fields = [FieldError(field=part, message=message)]
                await ApiError(400, "invalid_request", message, fields=fields).response()(
                    scope, receive, send
                )
                return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            message = f"request body is larger than {self.max_bytes} bytes"
            await ApiError(413, "request_too_large", message).response()(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_utf8(raw: bytes) -> bool:
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
