"""The codec server of the Temporal Web UI and CLI, so ops can read encrypted history.

Temporal's codec server protocol: `POST /codec/decode` (and `/codec/encode`, used when a
workflow is started or signalled from the UI) with `{"payloads": [...]}`, each payload in
proto3 JSON (`metadata` values and `data` base64), answered in the same shape; the UI names the
namespace in `X-Namespace`.

Whoever can call it reads every prompt and signed URL in history, so it requires the ops key
(`Authorization: Bearer <OPS_API_KEY>`; unset, it refuses everyone), and browsers may call it
only from the Web UI's origin (`TEMPORAL_UI_URL`): CORS is granted here and nowhere else in the
API. The CLI: `temporal workflow show --codec-endpoint <api>/codec --codec-auth "Bearer <key>"`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Header, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from settings import Settings
from temporal_client import PayloadDecryptionError, encryption_codec

from .auth import ops_key
from .errors import ApiError, install_error_handlers

# What the Web UI sends: its access token (when configured), the JSON body, the namespace.
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-Namespace"]


def ui_origin(url: str) -> str:
    """`http://127.0.0.1:8233/namespaces` -> `http://127.0.0.1:8233`, as a browser sends it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def codec_app(settings: Settings) -> FastAPI:
    codec = encryption_codec(settings)
    key = ops_key(settings.ops_api_key, "the codec endpoint")

    def ops(authorization: Annotated[str | None, Header(description="Bearer <OPS_API_KEY>")] = None) -> None:
        key.check(authorization)

    def namespace(x_namespace: Annotated[str | None, Header()] = None) -> None:
        # The keys are this deployment's; another namespace's history is not ours to open.
        if x_namespace is not None and x_namespace != settings.temporal_namespace:
            raise ApiError(
                400,
                "validation_error",
                f"X-Namespace {x_namespace!r} is not this deployment's namespace "
                f"({settings.temporal_namespace})",
            )

    app = FastAPI(
        openapi_url=None, docs_url=None, redoc_url=None, dependencies=[Depends(ops), Depends(namespace)]
    )
    install_error_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[ui_origin(settings.temporal_ui_url)],
        allow_methods=["POST"],
        allow_headers=ALLOWED_HEADERS,
        # The UI's "include cross-origin credentials" option.
        allow_credentials=True,
        max_age=600,
    )

    async def run(
        request: Request, transform: Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
    ) -> JSONResponse:
        payloads = parse_payloads(await request.body())
        try:
            done = await transform(payloads)
        except PayloadDecryptionError as error:
            raise ApiError(400, "decryption_error", str(error)) from None
        return JSONResponse({"payloads": [json_format.MessageToDict(payload) for payload in done]})

    @app.post("/decode")
    async def decode(request: Request) -> JSONResponse:
        return await run(request, codec.decode)

    @app.post("/encode")
    async def encode(request: Request) -> JSONResponse:
        return await run(request, codec.encode)

    return app


def parse_payloads(body: bytes) -> list[Payload]:
    """`{"payloads": [...]}` in proto3 JSON; a 400 naming the bad entry otherwise."""
    try:
        document: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "validation_error", 'body must be JSON: {"payloads": [...]}') from None
    entries = document.get("payloads") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ApiError(400, "validation_error", 'body must be {"payloads": [...]}')
    payloads = []
    for index, entry in enumerate(entries):
        try:
            payloads.append(json_format.ParseDict(entry, Payload()))
        except (json_format.ParseError, TypeError, AttributeError) as error:
            raise ApiError(
                400, "validation_error", f"payloads[{index}] is not a Temporal payload: {error}"
            ) from None
    return payloads
