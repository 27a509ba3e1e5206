"""The local stack behind `make up` / `make down` / `make status`.

Parts, all bound to 127.0.0.1, started in this order and each awaited with a real readiness
check (never a fixed sleep):

| part      | what                                     | ready when                               |
|-----------|------------------------------------------|------------------------------------------|
| temporal  | `temporal server start-dev`, SQLite WAL  | `temporal operator cluster health`       |
| seaweed   | `weed mini` S3 store, credentials needed | an authenticated PUT into `videos` works |
| simulator | `python -m simulator` (HTTPS)            | `GET /_sim/stats` answers 200            |
| api       | `python -m api` (HTTPS)                  | `GET /healthz` answers 200               |
| worker    | `python worker.py`                       | it polls the task queue (its pid@host)   |

State lives in the state directory: `.local/` at the repo root, or `$DEVSTACK_DIR`, or
`--state-dir`:

    env            generated secrets (S3 keys, callback secret, simulator key), mode 0600;
                   extra KEY=VALUE lines you add are passed to the Python parts too
    ports.json     the ports of the running stack (removed by `down`)
    run/NAME.pid   one pid file per part; `down` stops only a pid whose /proc entry still
                   shows that part (its cmdline and the DEVSTACK_PART/DEVSTACK_DIR it was given)
    logs/NAME.log  each part's output
    temporal.db    Temporal's SQLite file (workflows survive `down` / `up`)
    seaweed/       the S3 store's data and config
    tls/           the dev CA (`ca.pem`) and the server certificate the API and simulator use

Ports (defaults from INTERFACES.md), each overridable by an environment variable:
`DEV_TEMPORAL_PORT` (7233), `DEV_TEMPORAL_UI_PORT` (8233), `DEV_S3_PORT` (8333),
`DEV_SIM_PORT` (9100), `DEV_API_PORT` (8000). While the stack runs, `status`, `down` and
`demo` read the ports it was started with from `ports.json`, so the variables are only needed
for `up`. A port held by another program stops `up` before anything starts.

Exit codes: 0 success; 1 a part failed to start (its log's tail is printed); 2 bad
configuration or a port taken; 3 (`status` only) some part is not running or not ready.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import httpx

from devstack.files import write_private
from devstack.ports import LOOPBACK, port_is_free
from devstack.processes import (
    StartupError,
    find_binary,
    pid_alive,
    spawn,
    wait_until,
)
from devstack.seaweed import (
    SeaweedServer,
    new_access_key,
    new_secret_key,
    remove_unix_sockets,
    s3_put_works,
)
from devstack.temporal_server import TemporalDevServer, health_ok
from devstack.tls import TLSFiles, make_dev_ca
from settings import DEV_ENVIRONMENT
from temporal_client import CODEC_PATH

if TYPE_CHECKING:
    from settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
PARTS = ("temporal", "seaweed", "simulator", "api", "worker")
BUCKET = "videos"
TASK_QUEUE = "video-generation"
NAMESPACE = "default"
TENANT_KEYS = "demo:demo-secret,acme:acme-secret"
# The simulator runs ten times faster than the provider so a demo takes seconds, not minutes.
SIM_TIME_SCALE = "10"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0

DEFAULT_PORTS = {"temporal": 7233, "temporal_ui": 8233, "s3": 8333, "simulator": 9100, "api": 8000}
PORT_ENV = {
    "temporal": "DEV_TEMPORAL_PORT",
    "temporal_ui": "DEV_TEMPORAL_UI_PORT",
    "s3": "DEV_S3_PORT",
    "simulator": "DEV_SIM_PORT",
    "api": "DEV_API_PORT",
}
# Which ports each part listens on (checked free before it starts).
PART_PORTS = {
    "temporal": ("temporal", "temporal_ui"),
    "seaweed": ("s3",),
    "simulator": ("simulator",),
    "api": ("api",),
    "worker": (),
}
# Secrets generated once into `env`; the values never appear in output.
GENERATED_SECRETS: dict[str, Callable[[], str]] = {
    "S3_ACCESS_KEY": new_access_key,
    "S3_SECRET_KEY": new_secret_key,
    "CALLBACK_SECRET": lambda: secrets.token_urlsafe(32),
    "GPTIMAGE2_API_KEY": lambda: "sim-" + secrets.token_urlsafe(24),
    # The codec endpoint's key: `temporal workflow show --codec-auth "Bearer $OPS_API_KEY"`.
    "OPS_API_KEY": lambda: secrets.token_urlsafe(32),
}
# What a pid's cmdline must contain to still be that part (pids get reused).
CMDLINE_MARKERS = {
    "temporal": "start-dev",
    "seaweed": "mini",
    "simulator": "simulator",
    "api": "api",
    "worker": "worker.py",
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
    def tls(self) -> TLSFiles:
        return TLSFiles(
            ca=self.state.tls / "ca.pem",
            cert=self.state.tls / "server.pem",
            key=self.state.tls / "server-key.pem",
        )

    def url(self, part: str) -> str:
        return {
            "temporal": f"{self.temporal_address} (Web UI {self.temporal_ui_url})",
            "seaweed": f"http://{self.s3_endpoint} (bucket {BUCKET})",
            "simulator": self.simulator_url,
            "api": self.api_url,
            "worker": f"task queue {TASK_QUEUE} on {self.temporal_address}",
        }[part]

    def app_env(self) -> dict[str, str]:
        """The full environment of the Python parts (see settings.py for each variable)."""
        env = dict(os.environ)
        # A developer's shell exports (say a production TEMPORAL_ADDRESS) must not leak into
        # the dev stack, so every variable settings.py reads is dropped and set afresh.
        for name in _settings_env_names():
            env.pop(name, None)
        env.update(
            {
                # The demo tenant keys below and settings.py's development history key are
                # allowed here only.
                "ENVIRONMENT": DEV_ENVIRONMENT,
                "TEMPORAL_ADDRESS": self.temporal_address,
                "TEMPORAL_NAMESPACE": NAMESPACE,
                "TEMPORAL_UI_URL": self.temporal_ui_url,
                "TASK_QUEUE": TASK_QUEUE,
                "GPTIMAGE2_BASE_URL": self.simulator_url,
                "GPTIMAGE2_CA_FILE": str(self.tls.ca),
                # The simulator serves its results from 127.0.0.1, which production refuses.
                "RESULT_HOSTS": LOOPBACK,
                "ALLOWED_PRIVATE_HOSTS": f"{LOOPBACK},localhost",
                "CALLBACK_BASE_URL": self.api_url,
                "S3_ENDPOINT": self.s3_endpoint,
                "S3_BUCKET": BUCKET,
                "S3_SECURE": "false",
                "S3_REGION": "us-east-1",
                "API_KEYS": TENANT_KEYS,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.secrets)
        return env


def _server_env(state: StateDir, part: str) -> dict[str, str]:
    # Native servers get a minimal environment: weed, for one, would otherwise accept a
    # developer's AWS_ACCESS_KEY_ID as an extra admin identity.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(_tags(state, part))
    return env


def _tags(state: StateDir, part: str) -> dict[str, str]:
    return {"DEVSTACK_DIR": str(state.root), "DEVSTACK_PART": part}


def _settings_env_names() -> list[str]:
    from settings import Settings

    return [name.upper() for name in Settings.model_fields]


# ---------------------------------------------------------------------------------------------
# configuration


def configured_ports(state: StateDir) -> dict[str, int]:
    """Ports from DEV_* variables, else the running stack's ports.json, else the defaults."""
    recorded = _read_json(state.ports_file)
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


def with_stack_ports(settings: Settings, state: StateDir | None = None) -> Settings:
    """`settings` pointed at the dev stack's Temporal (and Web UI) as `status` finds them, for
    each of the two that the environment or `.env` does not set explicitly.

    Raises ConfigError for a malformed DEV_* port."""
    state = state or state_dir()
    stack = Stack(state=state, ports=configured_ports(state))
    found = {"temporal_address": stack.temporal_address, "temporal_ui_url": stack.temporal_ui_url}
    return settings.model_copy(
        update={name: value for name, value in found.items() if name not in settings.model_fields_set}
    )


def client_settings(state: StateDir | None = None) -> Settings:
    """Settings for a client of the stack (`reliable-video`, the README's Python example): what
    the environment or `.env` configures; when that sets no TEMPORAL_ADDRESS, the running dev
    stack, on the ports `status` finds, which is a development environment (its demo keys and
    history key are accepted).

    Raises ConfigError for a malformed DEV_* port, pydantic's ValidationError for bad settings."""
    from settings import Settings, get_settings

    as_dev = Settings(environment=DEV_ENVIRONMENT)
    if "temporal_address" in as_dev.model_fields_set:
        return get_settings()
    return with_stack_ports(as_dev, state)


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


# ---------------------------------------------------------------------------------------------
# processes


def running_pid(state: StateDir, part: str) -> int | None:
    """The part's pid if its pid file names a live process that still is that part."""
    try:
        pid = int(state.pid_file(part).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if is_part_process(pid, state, part) else None


def is_part_process(pid: int, state: StateDir, part: str) -> bool:
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return False
    marker = CMDLINE_MARKERS[part].encode()
    if not any(marker in arg for arg in cmdline):
        return False
    return all(f"{key}={value}".encode() in environ for key, value in _tags(state, part).items())


def _write_pid(state: StateDir, part: str, pid: int) -> None:
    state.pid_file(part).write_text(f"{pid}\n")


def _group_pids(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (a part and anything it forked)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # After the command name: state, ppid, pgrp.
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def _signal_part(pid: int, sig: signal.Signals) -> None:
    # Each part leads its own session (start_new_session), so signalling the group reaches
    # helpers it forked too, e.g. encoder processes, without touching anything else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_parts(state: StateDir, parts: list[str], out: TextIO) -> None:
    """SIGTERM the parts together, wait, SIGKILL whatever is left after STOP_TIMEOUT."""
    pids = {part: pid for part in parts if (pid := running_pid(state, part)) is not None}
    for part in parts:
        if part not in pids:
            state.pid_file(part).unlink(missing_ok=True)
    for pid in pids.values():
        _signal_part(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_group_pids(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for part, pid in pids.items():
        if _group_pids(pid):
            print(f"{part:<10} did not stop in {STOP_TIMEOUT:.0f} s; killing", file=out)
            _signal_part(pid, signal.SIGKILL)
    while any(_group_pids(pid) for pid in pids.values()) and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    for part in pids:
        state.pid_file(part).unlink(missing_ok=True)
        print(f"{part:<10} stopped", file=out)


# ---------------------------------------------------------------------------------------------
# readiness


def _https_ok(url: str, ca: Path, headers: Mapping[str, str] | None = None) -> bool:
    try:
        response = httpx.get(url, verify=str(ca), timeout=3.0, headers=headers)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _worker_polling(stack: Stack, pid: int) -> bool:
    argv = [find_binary("temporal"), "task-queue", "describe", "--task-queue", TASK_QUEUE]
    argv += ["--address", stack.temporal_address, "--namespace", NAMESPACE, "-o", "json"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        pollers = json.loads(result.stdout).get("pollers") or []
    except (subprocess.TimeoutExpired, json.JSONDecodeError, AttributeError):
        return False
    # The SDK's default identity is "pid@host": this proves it is *our* worker polling, not a
    # stale entry from a worker that died a minute ago.
    return any(str(poller.get("identity", "")).startswith(f"{pid}@") for poller in pollers)


def ready_check(stack: Stack, part: str, pid: int) -> Callable[[], bool]:
    ca = stack.tls.ca
    checks: dict[str, Callable[[], bool]] = {
        "temporal": lambda: health_ok(stack.temporal_address),
        "seaweed": lambda: s3_put_works(
            stack.s3_endpoint,
            stack.secrets.get("S3_ACCESS_KEY", ""),
            stack.secrets.get("S3_SECRET_KEY", ""),
            BUCKET,
        ),
        "simulator": lambda: _https_ok(
            f"{stack.simulator_url}/_sim/stats",
            ca,
            {"Authorization": f"Bearer {stack.secrets.get('GPTIMAGE2_API_KEY', '')}"},
        ),
        "api": lambda: _https_ok(f"{stack.api_url}/healthz", ca),
        "worker": lambda: _worker_polling(stack, pid),
    }
    return checks[part]


# ---------------------------------------------------------------------------------------------
# starting


def _start_part(stack: Stack, part: str) -> subprocess.Popen[bytes]:
    """Starts one part detached from this process (it outlives `up`)."""
    state = stack.state
    log_path = state.log(part)
    if part == "temporal":
        temporal = TemporalDevServer.start(
            state.root,
            port=stack.ports["temporal"],
            ui_port=stack.ports["temporal_ui"],
            db_path=state.temporal_db,
            log_path=log_path,
            env=_server_env(state, part),
            die_with_parent=False,
            # The Web UI asks the API to decrypt history payloads (api/codec.py).
            extra_args=["--ui-codec-endpoint", stack.codec_endpoint],
        )
        return temporal.process
    if part == "seaweed":
        # Internal listeners get fresh free ports each start (the data does not depend on
        # them); they are recorded so `down` can clean up weed's unix sockets.
        seaweed = SeaweedServer.start(
            state.seaweed,
            s3_port=stack.ports["s3"],
            access_key=stack.secrets["S3_ACCESS_KEY"],
            secret_key=stack.secrets["S3_SECRET_KEY"],
            bucket=BUCKET,
            log_path=log_path,
            env=_server_env(state, part),
            die_with_parent=False,
        )
        (state.seaweed / "ports.json").write_text(json.dumps(seaweed.ports))
        return seaweed.process

    tls = stack.tls
    argv = {
        "simulator": [
            sys.executable,
            "-m",
            "simulator",
            "--host",
            LOOPBACK,
            "--port",
            str(stack.ports["simulator"]),
            "--tls-cert",
            str(tls.cert),
            "--tls-key",
            str(tls.key),
            "--time-scale",
            SIM_TIME_SCALE,
            "--api-key",
            stack.secrets["GPTIMAGE2_API_KEY"],
            # The API it calls back is on 127.0.0.1, which the real provider would refuse.
            "--allow-private-callbacks",
            "--callback-cafile",
            str(tls.ca),
        ],
        "api": [
            sys.executable,
            "-m",
            "api",
            "--host",
            LOOPBACK,
            "--port",
            str(stack.ports["api"]),
            "--tls-cert",
            str(tls.cert),
            "--tls-key",
            str(tls.key),
        ],
        "worker": [sys.executable, str(REPO_ROOT / "worker.py")],
    }[part]
    env = stack.app_env()
    env.update(_tags(state, part))
    # cwd is the state dir, not the repo: a developer's repo `.env` (maybe pointing at
    # production) must not fill in what the dev stack leaves unset.
    return spawn(argv, cwd=state.root, log_path=log_path, env=env, die_with_parent=False)


def _port_conflicts(stack: Stack, parts: list[str]) -> list[str]:
    problems = []
    for part in parts:
        for name in PART_PORTS[part]:
            port = stack.ports[name]
            if not port_is_free(port):
                problems.append(
                    f"port {port} ({part}, {PORT_ENV[name]}) is already in use by another program"
                )
    return problems


@contextlib.contextmanager
def _locked(state: StateDir) -> Iterator[None]:
    # Two `up`s at once (say `make demo` in two terminals) must not both start a part.
    with open(state.root / "devstack.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(state: StateDir, out: TextIO = sys.stdout) -> int:
    state.create()
    with _locked(state):
        try:
            stack = load_stack(state, create=True)
        except ConfigError as error:
            print(f"error: {error}", file=out)
            return 2
        running = {part: pid for part in PARTS if (pid := running_pid(state, part)) is not None}
        if running and state.ports_file.is_file():
            recorded = _read_json(state.ports_file)
            for part in running:
                for name in PART_PORTS[part]:
                    if name in recorded and int(recorded[name]) != stack.ports[name]:
                        print(
                            f"note: {part} is already running on port {recorded[name]}; "
                            f"run `down` first to move it to {stack.ports[name]}",
                            file=out,
                        )
                        stack.ports[name] = int(recorded[name])
        to_start = [part for part in PARTS if part not in running]
        problems = _port_conflicts(stack, to_start)
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=out)
            print("nothing was started; free the port or choose another (see `DEV_*_PORT`)", file=out)
            return 2
        state.ports_file.write_text(json.dumps(stack.ports, indent=2) + "\n")
        make_dev_ca(state.tls)

        # Infrastructure and the simulator do not depend on each other: start them together,
        # then the API and the worker, which need Temporal at startup.
        for wave in (("temporal", "seaweed", "simulator"), ("api", "worker")):
            started: dict[str, float] = {}
            processes: dict[str, subprocess.Popen[bytes]] = {}
            for part in wave:
                if part in running:
                    print(f"{part:<10} already running (pid {running[part]})", file=out)
                    continue
                processes[part] = _start_part(stack, part)
                running[part] = processes[part].pid
                _write_pid(state, part, running[part])
                started[part] = time.monotonic()
            for part in wave:
                try:
                    wait_until(
                        ready_check(stack, part, running[part]),
                        timeout=READY_TIMEOUT,
                        what=part,
                        process=processes.get(part),
                        pid=running[part],
                        log_path=state.log(part),
                        interval=0.2,
                    )
                except StartupError as error:
                    print(f"{part:<10} FAILED: {error}", file=out)
                    if part in started:
                        stop_parts(state, [part], out)
                    print("other parts were left running; `down` stops them", file=out)
                    return 1
                if part in started:
                    elapsed = time.monotonic() - started[part]
                    print(f"{part:<10} ready in {elapsed:.1f} s  {stack.url(part)}", file=out)
        print(f"logs in {state.logs}; Temporal Web UI: {stack.temporal_ui_url}", file=out)
        return 0


def down(state: StateDir, out: TextIO = sys.stdout) -> int:
    if not state.root.is_dir():
        print("nothing to stop", file=out)
        return 0
    with _locked(state):
        # Apps first, so the worker and API do not spend their shutdown retrying a vanished
        # Temporal; then the infrastructure.
        stop_parts(state, ["worker", "api", "simulator"], out)
        stop_parts(state, ["seaweed", "temporal"], out)
        seaweed_ports = _read_json(state.seaweed / "ports.json")
        remove_unix_sockets(int(port) for port in seaweed_ports.values())
        state.ports_file.unlink(missing_ok=True)
        print("stack is down", file=out)
    return 0


def status(state: StateDir, out: TextIO = sys.stdout) -> int:
    try:
        stack = load_stack(state)
    except ConfigError as error:
        print(f"error: {error}", file=out)
        return 2
    all_ready = True
    print(f"state: {state.root}", file=out)
    for part in PARTS:
        pid = running_pid(state, part)
        if pid is None:
            all_ready = False
            print(f"{part:<10} stopped             {stack.url(part)}", file=out)
            continue
        ready = ready_check(stack, part, pid)()
        all_ready = all_ready and ready
        state_text = "ready" if ready else "NOT READY"
        print(f"{part:<10} {state_text:<9} pid {pid:<6} {stack.url(part)}", file=out)
    return 0 if all_ready else 3


def _read_json(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
