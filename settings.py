"""One settings object for every process (API, worker, starter, devstack).

Values come from the environment or a `.env` file; every default points at the local stack
that `make up` starts, so a fresh clone works with no configuration at all.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue: str = "video-generation"

    gptimage2_base_url: str = "https://127.0.0.1:9100"
    gptimage2_api_key: SecretStr = SecretStr("sim-key")
    # CA bundle used to verify the provider (and result downloads); the dev stack's own CA locally.
    gptimage2_ca_file: str | None = None
    # Hosts result URLs may be downloaded from; empty means "the provider base URL's host".
    result_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Public HTTPS base the provider calls back on; the callback path and token are appended.
    callback_base_url: str = "https://127.0.0.1:8000"
    callback_secret: SecretStr = SecretStr("dev-callback-secret-change-me")

    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: SecretStr = SecretStr("devaccess")
    s3_secret_key: SecretStr = SecretStr("devsecret-change-me")
    s3_bucket: str = "videos"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    cdn_base_url: str | None = None
    presign_ttl_seconds: int = 24 * 3600

    # "tenant:key,tenant:key" pairs.
    api_keys: SecretStr = SecretStr("demo:demo-secret,acme:acme-secret")
    # Hosts (exact names or IPs) that image URLs may use even though they are loopback/private.
    # Off by default; only the dev stack sets it, for the simulator's own images.
    allowed_private_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("result_hosts", "allowed_private_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def tenant_keys(self) -> dict[str, str]:
        """Maps API key -> tenant. Raises ValueError naming the malformed pair."""
        keys: dict[str, str] = {}
        for pair in self.api_keys.get_secret_value().split(","):
            pair = pair.strip()
            if not pair:
                continue
            tenant, sep, key = pair.partition(":")
            if not sep or not tenant or not key:
                raise ValueError("API_KEYS must be tenant:key pairs separated by commas")
            keys[key] = tenant
        return keys


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
