"""One settings object for every process (API, worker, starter, devstack).

Values come from the environment or a `.env` file; every default points at the local stack
that `make up` starts. The defaults include development secrets (below), which are refused unless
`ENVIRONMENT=dev`: a deployment that forgets a secret fails at startup, naming it, instead of
running with a key published in this repository.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import quote

import certifi
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workflows.budget import TenantBudget

DEV_ENVIRONMENT = "dev"
# What deploy/prod.env.example puts where a secret belongs; the dev defaults end with it too.
PLACEHOLDER_SUFFIX = "change-me"
# AES-256: keys are 32 random bytes, base64 (`python -c "import os,base64;
# print(base64.b64encode(os.urandom(32)).decode())"`).
ENCRYPTION_KEY_BYTES = 32
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error would otherwise print every value it was given,
    # secrets included, into the log of a process that fails to start.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    # "dev" allows the development secrets below (the dev stack, tests, `make demo`); anything
    # else is treated as production and refuses them.
    environment: str = "production"

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue: str = "video-generation"

    gptimage2_base_url: str = "https://127.0.0.1:9100"
    gptimage2_api_key: SecretStr = SecretStr("sim-key")
    # A CA bundle trusted beside the public CAs by every outbound TLS connection (outbound_trust);
    # the dev stack's own CA locally, which signs the simulator's API, images and results.
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

    # "key-id:base64-key" pairs, comma-separated: the first encrypts Temporal payloads, all
    # decrypt (rotation: put the new key first, drop an old one once no retained history uses it).
    history_encryption_keys: SecretStr = SecretStr("dev-2024:ZGV2LW9ubHktaGlzdG9yeS1rZXktY2hhbmdlLW1lISE=")
    # Bearer key for the codec endpoint (/codec/decode, /codec/encode) that lets ops read
    # history in the Temporal Web UI or CLI; unset = the endpoint refuses everyone.
    ops_api_key: SecretStr | None = None

    # Credit budgets per tenant (workflows.budget), as JSON: `{"acme": {"daily": 5000,
    # "monthly": 100000, "soft_daily": 4000, "per_user_daily": 500}}`. A tenant absent here has
    # no budget (and no ledger) unless the admin API sets one.
    tenant_budgets: dict[str, TenantBudget] = Field(default_factory=dict)
    # Bearer key of the admin API (/v1/admin/...: budgets, webhook endpoints); unset = it refuses everyone.
    admin_api_key: SecretStr | None = None
    # How often the API compares the provider's used credits (GET /v1/credits) with the ledgers
    # and exports the drift; 0 turns it off.
    budget_reconcile_seconds: float = Field(60.0, ge=0)
    # How long an API process trusts what a tenant's ledger said about an admin-set budget: a
    # budget set through another API replica applies here at most this many seconds later.
    budget_cache_seconds: float = Field(5.0, ge=0)
    # Outgoing webhooks (webhooks/). Secrets of admin-made endpoints and of a request's
    # notify_url are derived from this key (none is stored): changing it changes them all.
    webhook_signing_key: SecretStr = SecretStr("dev-webhook-signing-key-change-me")
    # Endpoints by configuration, a JSON list: [{"tenant": "acme", "id": "main", "url":
    # "https://...", "events": ["generation.delivered", ...], "secrets": ["whsec_new", "whsec_old"]}]
    # (two secrets while one is rotated out). More come from the admin API.
    webhook_endpoints: SecretStr | None = None
    # How long an admin-rotated endpoint's previous secret still signs (two active secrets).
    webhook_rotation_grace_seconds: int = 24 * 3600
    # Where `python worker.py` serves its Prometheus metrics (host:port; empty: no metrics).
    worker_metrics_bind: str = "127.0.0.1:9464"
    # Whether generation metrics carry a `tenant` label (off: `-`, for many tenants).
    metrics_tenant_label: bool = True

    @field_validator("result_hosts", "allowed_private_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        self.history_encryption_key_list()
        self.webhook_endpoint_list()
        found = [] if self.environment == DEV_ENVIRONMENT else self._development_secrets()
        if found:
            holds = "holds the development default" if len(found) == 1 else "hold development defaults"
            raise ValueError(
                f"{', '.join(found)} {holds}; set a real secret or ENVIRONMENT={DEV_ENVIRONMENT}"
            )
        return self

    def _development_secrets(self) -> list[str]:
        """Variables holding a secret published in this repository: a default of this class,
        a demo tenant key, or a `change-me` placeholder."""
        found = []
        dev_tenant_keys = _default_tenant_keys()
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if not isinstance(value, SecretStr):
                continue
            secret = value.get_secret_value()
            if isinstance(field.default, SecretStr) and secret == field.default.get_secret_value():
                found.append(name.upper())
            elif secret.endswith(PLACEHOLDER_SUFFIX):
                found.append(name.upper())
            elif name == "api_keys" and any(
                key in dev_tenant_keys or key.endswith(PLACEHOLDER_SUFFIX) for key in self.tenant_keys()
            ):
                found.append(name.upper())
        return found

    def history_encryption_key_list(self) -> list[tuple[str, bytes]]:
        """(key id, key) in order, the first encrypting. Raises ValueError naming the bad pair."""
        keys: list[tuple[str, bytes]] = []
        for pair in self.history_encryption_keys.get_secret_value().split(","):
            pair = pair.strip()
            if not pair:
                continue
            key_id, sep, encoded = pair.partition(":")
            if not sep or not _KEY_ID_RE.match(key_id):
                raise ValueError(
                    "HISTORY_ENCRYPTION_KEYS must be key-id:base64-key pairs separated by commas "
                    "(key ids: letters, digits, '.', '_', '-')"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                key = b""
            if len(key) != ENCRYPTION_KEY_BYTES:
                raise ValueError(
                    f"HISTORY_ENCRYPTION_KEYS: key {key_id!r} must be {ENCRYPTION_KEY_BYTES} bytes, base64"
                )
            if any(key_id == seen for seen, _ in keys):
                raise ValueError(f"HISTORY_ENCRYPTION_KEYS: key id {key_id!r} appears twice")
            keys.append((key_id, key))
        if not keys:
            raise ValueError("HISTORY_ENCRYPTION_KEYS must hold at least one key-id:base64-key pair")
        return keys

    def workflow_ui_url(self, workflow_id: str) -> str:
        """The generation's page in the Temporal Web UI (TEMPORAL_UI_URL)."""
        return f"{self.temporal_ui_url.rstrip('/')}/namespaces/{quote(self.temporal_namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"

    def webhook_endpoint_list(self) -> list[Any]:
        """WEBHOOK_ENDPOINTS parsed (webhooks.endpoints.ConfiguredEndpoint). Raises ValueError
        naming the variable and the bad entry's field (never its secrets)."""
        from webhooks.endpoints import parse_configured_endpoints

        raw = self.webhook_endpoints.get_secret_value() if self.webhook_endpoints else ""
        return parse_configured_endpoints(raw)

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


def _default_tenant_keys() -> set[str]:
    default: Any = Settings.model_fields["api_keys"].default
    return {pair.partition(":")[2] for pair in default.get_secret_value().split(",")}


def outbound_trust(settings: Settings) -> ssl.SSLContext:
    """The one trust rule for every outbound TLS connection: the provider's API, the image
    checks (in the API at submission, in the worker before the create) and result downloads.
    Public CAs (certifi's bundle, what httpx trusts by default, the same in every image), plus
    GPTIMAGE2_CA_FILE when set. One rule, so an image host the API accepted is accepted by the
    worker's re-check too, and a private CA never replaces the public ones."""
    context = ssl.create_default_context(cafile=certifi.where())
    if settings.gptimage2_ca_file:
        context.load_verify_locations(cafile=settings.gptimage2_ca_file)
    return context


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
