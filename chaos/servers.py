"""The chaos run's own servers, each in its own process on its own free ports, with state in the
run's directory: Temporal (SQLite, WAL), SeaweedFS, the simulator, the API and N workers, laid
out as bench/_common.py lays them out, except that every part can be stopped, killed and
started again on the same ports and the same state, which is what the scenarios do to them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx

from devstack.parts import REPO_ROOT, api_argv, simulator_argv
from devstack.ports import free_ports
from devstack.processes import spawn, stop_process, wait_until
from devstack.seaweed import SeaweedServer
from devstack.temporal_server import TemporalDevServer
from devstack.testbed import settings_env, testbed_settings
from devstack.tls import TLSFiles, make_dev_ca
from settings import DEV_ENVIRONMENT, Settings
from simulator.testing import SimulatorHandle

SIM_KEY = "chaos-sim-key"
TASK_QUEUE = "chaos"


def https_ready(url: str, tls: TLSFiles) -> bool:
    try:
        return httpx.get(url, verify=tls.ssl_context(), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class ChaosServers:
    root: Path
    time_scale: float
    workers: int
    tls: TLSFiles = field(init=False)
    temporal: TemporalDevServer = field(init=False)
    s3: SeaweedServer = field(init=False)
    sim: SimulatorHandle = field(init=False)
    settings: Settings = field(init=False)
    sim_process: subprocess.Popen[bytes] = field(init=False)
    api_process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    worker_processes: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)
    worker_starts: int = field(init=False, default=0)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.tls = make_dev_ca(self.root / "tls")
        temporal_port, sim_port, api_port = free_ports(3)
        self.temporal = self._start_temporal(temporal_port)
        self.s3 = SeaweedServer.start(self.root / "seaweed")
        sim_url = f"https://127.0.0.1:{sim_port}"
        argv = simulator_argv(port=sim_port, tls=self.tls, api_key=SIM_KEY, time_scale=self.time_scale)
        self.sim_process = spawn(
            [*argv, "--seed", "15", "--log-level", "warning"],
            cwd=REPO_ROOT,
            log_path=self.root / "simulator.log",
        )
        self.sim = SimulatorHandle(
            sim_url,
            SIM_KEY,
            str(self.tls.ca),
            None,
            httpx.Client(base_url=sim_url, verify=self.tls.ssl_context()),
        )
        self.temporal.wait_ready(90)
        self.s3.wait_ready(90)
        self._wait_https(f"{sim_url}/_sim/health", "simulator", self.sim_process)
        api_url = f"https://127.0.0.1:{api_port}"
        self.settings = testbed_settings(
            self.temporal.address, self.sim, self.s3, self.tls, api_url, TASK_QUEUE
        )
        self.start_api()
        self.wait_api()
        for _ in range(self.workers):
            self.worker_processes.append(self._spawn_worker())

    def stop(self) -> None:
        for process in self.worker_processes:
            stop_process(process)
        if self.api_process is not None:
            stop_process(self.api_process)
        stop_process(self.sim_process)
        self.s3.stop()
        self.temporal.stop()

    @property
    def env(self) -> dict[str, str]:
        # No rate limit at the edge: the run's own load is not what is under test.
        return {
            **os.environ,
            **settings_env(self.settings),
            "ENVIRONMENT": DEV_ENVIRONMENT,
            "API_RATE_LIMIT_PER_SECOND": "100000",
            "API_RATE_LIMIT_BURST": "100000",
        }

    # ---- Temporal: stopped or killed, then started on the same port and SQLite file -----------

    def _start_temporal(self, port: int) -> TemporalDevServer:
        return TemporalDevServer.start(
            self.root / "temporal", port=port, headless=True, log_path=self.root / "temporal.log"
        )

    def stop_temporal(self, sig: signal.Signals) -> None:
        process = self.temporal.process
        process.send_signal(sig)
        process.wait(timeout=60)

    def start_temporal(self) -> None:
        """Spawns it (from the main thread: children die with the thread that started them);
        `temporal.wait_ready` is the caller's, off the event loop."""
        self.temporal = self._start_temporal(self.temporal.port)

    # ---- SeaweedFS: stopped, then started on the same ports and data ----------------------------

    def stop_s3(self) -> None:
        stop_process(self.s3.process)

    def start_s3(self) -> None:
        old = self.s3
        internal = {name: port for name, port in old.ports.items() if name != "s3.port"}
        self.s3 = SeaweedServer.start(
            old.workdir,
            s3_port=old.s3_port,
            access_key=old.access_key,
            secret_key=old.secret_key,
            bucket=old.bucket,
            internal_ports=internal,
        )

    # ---- the API and the workers -------------------------------------------------------------

    def start_api(self) -> None:
        port = int(self.settings.callback_base_url.rsplit(":", 1)[1])
        self.api_process = spawn(
            api_argv(port=port, tls=self.tls), cwd=REPO_ROOT, log_path=self.root / "api.log", env=self.env
        )

    def wait_api(self) -> None:
        assert self.api_process is not None
        self._wait_https(f"{self.settings.callback_base_url}/readyz", "api", self.api_process)

    def _wait_https(self, url: str, name: str, process: subprocess.Popen[bytes]) -> None:
        """Until `url` answers 200 (its log is `<name>.log` in the run's directory)."""
        ready = partial(https_ready, url, self.tls)
        wait_until(ready, timeout=60, what=name, process=process, log_path=self.root / f"{name}.log")

    def stop_api(self) -> None:
        assert self.api_process is not None
        stop_process(self.api_process)

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        self.worker_starts += 1
        return spawn(
            [sys.executable, str(REPO_ROOT / "worker.py")],
            cwd=REPO_ROOT,
            log_path=self.root / f"worker-{self.worker_starts}.log",
            env=self.env,
        )

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker `index` (no cleanup of any kind), then start a new one in its place."""
        process = self.worker_processes[index]
        process.kill()
        process.wait(timeout=30)
        self.worker_processes[index] = self._spawn_worker()


def elapsed_since(started: float) -> float:
    return round(time.monotonic() - started, 1)
