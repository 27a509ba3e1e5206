"""What the dev stack is configured as: where its state lives, its ports and secrets, and the
environment its Python parts run with. devstack.stack starts and stops the parts; devstack.parts
says what each part is."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.files import read_json, write_private
from devstack.parts import DEFAULT_PORTS, PORT_ENV, REPO_ROOT
from devstack.ports import LOOPBACK
from devstack.seaweed import new_access_key, new_secret_key
from devstack.tls import TLSFiles
from settings import DEV_ENVIRONMENT, Settings
from temporal_client import CODEC_PATH

# Settings' own defaults (the environment is not read): the dev stack's task queue, namespace,
# bucket and demo tenant keys are whatever a process configured by nothing would use.
DEFAULTS = Settings.model_construct()

# Secrets generated once into `env`; the values never appear in output.
GENERATED_SECRETS: dict[str, Callable[[], str]] = {
    "S3_ACCESS_KEY": new_access_key,
    "S3_SECRET_KEY": new_secret_key,
    "CALLBACK_SECRET": lambda: secrets.token_urlsafe(32),
    "GPTIMAGE2_API_KEY": lambda: "sim-" + secrets.token_urlsafe(24),
    # The codec endpoint's key: `temporal workflow show --codec-auth "Bearer $OPS_API_KEY"`.
    "OPS_API_KEY": lambda: secrets.token_urlsafe(32),
}


class ConfigError(Exception):
    """Bad configuration or a port taken: nothing was started."""


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def seaweed(self) -> Path:
        return self.root / "seaweed"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def temporal_db(self) -> Path:
        return self.root / "temporal.db"

    @property
    def demo_key(self) -> Path:
        return self.root / "demo-key"

    def pid_file(self, part: str) -> Path:
        return self.run / f"{part}.pid"

    def log(self, part: str) -> Path:
        return self.logs / f"{part}.log"

    def create(self) -> None:
        for directory in (self.root, self.run, self.logs, self.tls, self.seaweed):
            directory.mkdir(parents=True, exist_ok=True)
        # State holds keys and secrets: keep the whole tree private to the owner.
        self.root.chmod(0o700)


def state_dir(explicit: str | None = None) -> StateDir:
    raw = explicit or os.environ.get("DEVSTACK_DIR") or str(REPO_ROOT / ".local")
    return StateDir(Path(raw).expanduser().resolve())


@dataclass
class Stack:
    """What the stack is configured as: ports, secrets, TLS files and derived URLs."""

    state: StateDir
    ports: dict[str, int]
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def temporal_address(self) -> str:
        return f"{LOOPBACK}:{self.ports['temporal']}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['temporal_ui']}"

    @property
    def s3_endpoint(self) -> str:
        return f"{LOOPBACK}:{self.ports['s3']}"

    @property
    def simulator_url(self) -> str:
        return f"https://{LOOPBACK}:{self.ports['simulator']}"

    @property
    def api_url(self) -> str:
        return f"https://{LOOPBACK}:{self.ports['api']}"

    @property
    def codec_endpoint(self) -> str:
        return f"{self.api_url}{CODEC_PATH}"

    @property
    def namespace(self) -> str:
        return DEFAULTS.temporal_namespace

    @property
    def task_queue(self) -> str:
        return DEFAULTS.task_queue

    @property
    def bucket(self) -> str:
        return DEFAULTS.s3_bucket

    @property
    def tls(self) -> TLSFiles:
        return TLSFiles(
            ca=self.state.tls / "ca.pem",
            cert=self.state.tls / "server.pem",
            key=self.state.tls / "server-key.pem",
        )

    def app_env(self) -> dict[str, str]:
        """The full environment of the Python parts (see settings.py for each variable)."""
        env = dict(os.environ)
        # A developer's shell exports (say a production TEMPORAL_ADDRESS) must not leak into
        # the dev stack, so every variable settings.py reads is dropped and set afresh.
        for name in Settings.model_fields:
            env.pop(name.upper(), None)
        env.update(
            {
                # The demo tenant keys below and settings.py's development history key are
                # allowed here only.
                "ENVIRONMENT": DEV_ENVIRONMENT,
                "TEMPORAL_ADDRESS": self.temporal_address,
                "TEMPORAL_NAMESPACE": self.namespace,
                "TEMPORAL_UI_URL": self.temporal_ui_url,
                "TASK_QUEUE": self.task_queue,
                "GPTIMAGE2_BASE_URL": self.simulator_url,
                "GPTIMAGE2_CA_FILE": str(self.tls.ca),
                # The simulator serves its results from 127.0.0.1, which production refuses.
                "RESULT_HOSTS": LOOPBACK,
                "ALLOWED_PRIVATE_HOSTS": f"{LOOPBACK},localhost",
                "CALLBACK_BASE_URL": self.api_url,
                "S3_ENDPOINT": self.s3_endpoint,
                "S3_BUCKET": self.bucket,
                "S3_SECURE": "false",
                "S3_REGION": "us-east-1",
                "API_KEYS": DEFAULTS.api_keys.get_secret_value(),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.secrets)
        return env


def configured_ports(state: StateDir) -> dict[str, int]:
    """Ports from DEV_* variables, else the running stack's ports.json, else the defaults."""
    recorded = read_json(state.ports_file)
    ports: dict[str, int] = {}
    for name, default in DEFAULT_PORTS.items():
        raw = os.environ.get(PORT_ENV[name])
        if raw:
            try:
                port = int(raw)
            except ValueError:
                raise ConfigError(f"{PORT_ENV[name]}={raw!r} is not a port number") from None
            if not 1 <= port <= 65535:
                raise ConfigError(f"{PORT_ENV[name]}={port} is out of range")
            ports[name] = port
        else:
            ports[name] = int(recorded.get(name, default))
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            raise ConfigError(f"{PORT_ENV[name]} and {PORT_ENV[seen[port]]} are both {port}")
        seen[port] = name
    return ports


def load_secrets(state: StateDir, *, create: bool) -> dict[str, str]:
    """KEY=VALUE pairs from the state's `env` file, generating missing secrets if `create`."""
    values: dict[str, str] = {}
    if state.env_file.is_file():
        for line in state.env_file.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    missing = [key for key in GENERATED_SECRETS if not values.get(key)]
    if create and missing:
        for key in missing:
            values[key] = GENERATED_SECRETS[key]()
        body = "# Generated once by `python -m devstack up`; dev stack only. Keep private.\n"
        body += "".join(f"{key}={value}\n" for key, value in values.items())
        write_private(state.env_file, body.encode())
    return values


def load_stack(state: StateDir, *, create: bool = False) -> Stack:
    return Stack(state=state, ports=configured_ports(state), secrets=load_secrets(state, create=create))
