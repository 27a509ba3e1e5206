"""How the API is served: one place for uvicorn's settings, used by `python -m api`, the
tests and the benchmark alike."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from fastapi import FastAPI

from .config import ApiConfig


def uvicorn_config(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    config: ApiConfig | None = None,
    log_level: str = "info",
) -> uvicorn.Config:
    config = config or ApiConfig()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        # h11 (not httptools) so the header size limit below applies.
        http="h11",
        h11_max_incomplete_event_size=config.max_header_bytes,
        # uvicorn's access log prints raw paths, and callback paths carry tokens; the app logs
        # route templates instead (api.metrics).
        access_log=False,
        server_header=False,
        # Behind a proxy, set FORWARDED_ALLOW_IPS explicitly; never trust X-Forwarded-* by default.
        proxy_headers=False,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=config.shutdown_grace_seconds,
    )
