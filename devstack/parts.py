"""The parts of the dev stack, each described once: its ports, how it starts, how `up` and
`status` know it is ready, where it answers, and what its command line shows (pids get reused).
Adding a part is one `Part` in PARTS; devstack.stack starts, checks and stops whatever is here.

`simulator_argv` and `api_argv` are also how the benchmarks start those two (bench/_common.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from devstack.files import read_json
from devstack.ports import LOOPBACK
from devstack.processes import find_binary
from devstack.seaweed import SeaweedServer, bucket_ready, remove_unix_sockets
from devstack.temporal_server import TemporalDevServer, ensure_search_attributes, health_ok
from devstack.tls import TLSFiles

if TYPE_CHECKING:
    from devstack.state import Stack, StateDir

REPO_ROOT = Path(__file__).resolve().parent.parent
# The simulator runs ten times faster than the provider so a demo takes seconds, not minutes.
SIM_TIME_SCALE = 10.0

Launcher = Callable[["Stack", Path, dict[str, str]], "subprocess.Popen[bytes]"]


@dataclass(frozen=True)
class Port:
    name: str  # the key in ports.json and Stack.ports
    default: int
    env: str  # the DEV_*_PORT variable that overrides the default


@dataclass(frozen=True)
class Part:
    name: str
    # Parts of one wave start together; a wave starts once the one before it is ready.
    wave: int
    # What a pid's cmdline must contain to still be this part.
    cmdline_marker: str
    # Where it answers, as `up` and `status` print it.
    url: Callable[[Stack], str]
    # Ready: answering as its clients need, checked with its pid (never a fixed sleep).
    ready: Callable[[Stack, int], bool]
    ports: tuple[Port, ...] = ()
    # A Python app is `argv`, run from the state dir with Stack.app_env(); a native server
    # has a `launch`er of its own (called with its log path and a minimal environment).
    argv: Callable[[Stack], list[str]] | None = None
    launch: Launcher | None = None
    # Cleanup once it has stopped.
    after_stop: Callable[[StateDir], None] | None = None

    def __post_init__(self) -> None:
        if (self.argv is None) == (self.launch is None):
            raise ValueError(f"part {self.name}: give exactly one of argv (an app) or launch (a server)")

    @property
    def is_app(self) -> bool:
        return self.argv is not None


# ---------------------------------------------------------------------------------------------
# command lines


def _https_server(port: int, tls: TLSFiles) -> list[str]:
    """The options `python -m simulator` and `python -m api` share: where and how they serve."""
    return ["--host", LOOPBACK, "--port", str(port), "--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]


def simulator_argv(*, port: int, tls: TLSFiles, api_key: str, time_scale: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "simulator",
        *_https_server(port, tls),
        "--time-scale",
        f"{time_scale:g}",
        "--api-key",
        api_key,
        # The API it calls back is on 127.0.0.1, which the real provider would refuse.
        "--allow-private-callbacks",
        "--callback-cafile",
        str(tls.ca),
    ]


def api_argv(*, port: int, tls: TLSFiles) -> list[str]:
    return [sys.executable, "-m", "api", *_https_server(port, tls)]


def _launch_temporal(stack: Stack, log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    temporal = TemporalDevServer.start(
        stack.state.root,
        port=stack.ports["temporal"],
        ui_port=stack.ports["temporal_ui"],
        avoid_ports=stack.ports.values(),  # its HTTP and metrics ports: none of the stack's own
        db_path=stack.state.temporal_db,
        log_path=log_path,
        env=env,
        die_with_parent=False,
        # The Web UI asks the API to decrypt history payloads (api/codec.py).
        extra_args=["--ui-codec-endpoint", stack.codec_endpoint],
    )
    return temporal.process


def _seaweed_ports(state: StateDir) -> Path:
    return state.seaweed / "ports.json"


def _launch_seaweed(stack: Stack, log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Internal listeners get fresh free ports each start (the data does not depend on them),
    # none of the stack's own (a part that has not bound its port yet would lose it); they are
    # recorded so `down` can clean up weed's unix sockets.
    seaweed = SeaweedServer.start(
        stack.state.seaweed,
        s3_port=stack.ports["s3"],
        avoid_ports=stack.ports.values(),
        access_key=stack.secrets["S3_ACCESS_KEY"],
        secret_key=stack.secrets["S3_SECRET_KEY"],
        bucket=stack.bucket,
        log_path=log_path,
        env=env,
        die_with_parent=False,
    )
    _seaweed_ports(stack.state).write_text(json.dumps(seaweed.ports))
    return seaweed.process


def _remove_seaweed_sockets(state: StateDir) -> None:
    remove_unix_sockets(int(port) for port in read_json(_seaweed_ports(state)).values())


# ---------------------------------------------------------------------------------------------
# readiness


def _https_ok(url: str, ca: Path, headers: Mapping[str, str] | None = None) -> bool:
    try:
        response = httpx.get(url, verify=str(ca), timeout=3.0, headers=headers)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _worker_polling(stack: Stack, pid: int) -> bool:
    argv = [find_binary("temporal"), "task-queue", "describe", "--task-queue", stack.task_queue]
    argv += ["--address", stack.temporal_address, "--namespace", stack.namespace, "-o", "json"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        pollers = json.loads(result.stdout).get("pollers") or []
    except (subprocess.TimeoutExpired, json.JSONDecodeError, AttributeError):
        return False
    # The SDK's default identity is "pid@host": this proves it is *our* worker polling, not a
    # stale entry from a worker that died a minute ago.
    return any(str(poller.get("identity", "")).startswith(f"{pid}@") for poller in pollers)


def _worker_metrics(stack: Stack) -> str:
    return f"{LOOPBACK}:{stack.ports['worker_metrics']}"


# ---------------------------------------------------------------------------------------------
# the parts, in start order

PARTS: tuple[Part, ...] = (
    Part(
        name="temporal",
        wave=0,
        cmdline_marker="start-dev",
        ports=(
            Port("temporal", 7233, "DEV_TEMPORAL_PORT"),
            Port("temporal_ui", 8233, "DEV_TEMPORAL_UI_PORT"),
        ),
        launch=_launch_temporal,
        ready=lambda stack, pid: (
            health_ok(stack.temporal_address) and ensure_search_attributes(stack.temporal_address)
        ),
        url=lambda stack: f"{stack.temporal_address} (Web UI {stack.temporal_ui_url})",
    ),
    Part(
        name="seaweed",
        wave=0,
        cmdline_marker="mini",
        ports=(Port("s3", 8333, "DEV_S3_PORT"),),
        launch=_launch_seaweed,
        ready=lambda stack, pid: bucket_ready(
            stack.s3_endpoint,
            stack.secrets.get("S3_ACCESS_KEY", ""),
            stack.secrets.get("S3_SECRET_KEY", ""),
            stack.bucket,
        ),
        url=lambda stack: f"http://{stack.s3_endpoint} (bucket {stack.bucket})",
        after_stop=_remove_seaweed_sockets,
    ),
    Part(
        name="simulator",
        wave=0,
        cmdline_marker="simulator",
        ports=(Port("simulator", 9100, "DEV_SIM_PORT"),),
        argv=lambda stack: simulator_argv(
            port=stack.ports["simulator"],
            tls=stack.tls,
            api_key=stack.secrets["GPTIMAGE2_API_KEY"],
            time_scale=SIM_TIME_SCALE,
        ),
        ready=lambda stack, pid: _https_ok(
            f"{stack.simulator_url}/_sim/stats",
            stack.tls.ca,
            {"Authorization": f"Bearer {stack.secrets.get('GPTIMAGE2_API_KEY', '')}"},
        ),
        url=lambda stack: stack.simulator_url,
    ),
    # The API and the worker need Temporal at startup: the second wave.
    Part(
        name="api",
        wave=1,
        cmdline_marker="api",
        ports=(Port("api", 8000, "DEV_API_PORT"),),
        argv=lambda stack: api_argv(port=stack.ports["api"], tls=stack.tls),
        ready=lambda stack, pid: _https_ok(f"{stack.api_url}/healthz", stack.tls.ca),
        url=lambda stack: stack.api_url,
    ),
    Part(
        name="worker",
        wave=1,
        cmdline_marker="worker.py",
        ports=(Port("worker_metrics", 9464, "DEV_WORKER_METRICS_PORT"),),
        argv=lambda stack: [
            sys.executable,
            str(REPO_ROOT / "worker.py"),
            "--metrics-bind",
            _worker_metrics(stack),
        ],
        ready=_worker_polling,
        url=lambda stack: (
            f"task queue {stack.task_queue} on {stack.temporal_address}, "
            f"metrics http://{_worker_metrics(stack)}/metrics"
        ),
    ),
)
DEFAULT_PORTS = {port.name: port.default for part in PARTS for port in part.ports}
PORT_ENV = {port.name: port.env for part in PARTS for port in part.ports}
