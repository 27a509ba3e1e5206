"""Knobs of the HTTP API itself (limits, timeouts), read from `API_*` environment variables.

Kept apart from `settings.Settings` (which every process shares) until they earn a place there;
every default is safe for production.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="API_", env_file=".env", extra="ignore")

    # Bodies are small JSON documents; anything bigger is a mistake or an attack (413).
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # h11's limit on the request line plus headers (uvicorn `h11_max_incomplete_event_size`).
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    # Per-tenant token bucket on /v1 (per API replica): sustained rate and burst.
    rate_limit_per_second: float = Field(20.0, gt=0)
    rate_limit_burst: int = Field(40, ge=1)
    # Bounds on every Temporal call made while a request waits, so a slow or absent cluster
    # turns into a quick 503 instead of a hung connection.
    temporal_connect_timeout_seconds: float = Field(3.0, gt=0)
    temporal_call_timeout_seconds: float = Field(10.0, gt=0)
    readiness_timeout_seconds: float = Field(2.0, gt=0)
    # Whole check of one image URL (DNS, redirects, first bytes).
    image_check_timeout_seconds: float = Field(8.0, gt=0)
    # How much of a callback body is logged (after redaction).
    callback_log_bytes: int = Field(2048, ge=0)
    # A callback is answered once its signal lands or after this long, whichever is first;
    # slower signals finish in the background (at most `callback_max_pending` at once).
    callback_answer_within_seconds: float = Field(0.25, gt=0)
    callback_max_pending: int = Field(2000, ge=1)
    # How many delivered (generation, task, status) hints each replica remembers, to answer the
    # provider's repeats of them without another signal, and how many ended generations, to
    # answer their late callbacks without asking Temporal (0 turns both off). The provider
    # repeats within seconds, so this covers minutes of callbacks at hundreds per second.
    callback_dedup_entries: int = Field(20_000, ge=0)
    # On shutdown, requests in flight get this long to finish. Idle keep-alive connections do
    # not hold it up beyond this: closing TLS waits for the client's close_notify, which an
    # idle pooled client never sends (asyncio would wait 30 s for each).
    shutdown_grace_seconds: int = Field(5, ge=1)
    # The ops page (GET /ops) and expected ready times read visibility; at most this many
    # generations per read (the page says when it hit the limit).
    ops_visibility_limit: int = Field(5000, ge=1)
    # expected_ready_at: the p95 of deliveries of the same model, duration and quality over the
    # last `expected_window_hours`, once there are `expected_min_samples` of them, re-read from
    # visibility at most every `expected_cache_seconds` per shape.
    expected_window_hours: float = Field(24.0, gt=0)
    expected_min_samples: int = Field(5, ge=1)
    expected_cache_seconds: float = Field(60.0, ge=0)
