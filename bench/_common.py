"""Shared pieces of the benchmarks: the real servers, laid out as in production (Temporal dev
server in SQLite WAL mode, SeaweedFS, the simulator and the API each in its own process), and a
place to write results. Figures are printed as ratios against a baseline measured in the same
run, never asserted."""

from __future__ import annotations

import json
import math
import os
import ssl
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from devstack.parts import api_argv, simulator_argv
from devstack.ports import free_port
from devstack.processes import spawn, stop_process, wait_until
from devstack.seaweed import SeaweedServer
from devstack.temporal_server import TemporalDevServer
from devstack.testbed import Testbed, settings_env, testbed_settings
from devstack.tls import TLSFiles, make_dev_ca
from gptimage2 import Quality, VideoParams
from settings import Settings
from simulator.testing import SimulatorHandle
from temporal_client import connect
from workflows.control import StartResult, start_generation
from workflows.models import GenerationSpec
from workflows.search_attributes import SEARCH_ATTRIBUTES
from workflows.webhook_plan import WebhookPlan

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
SIM_KEY = "bench-sim-key"


@dataclass
class Servers:
    temporal: TemporalDevServer
    s3: SeaweedServer
    tls: TLSFiles
    sim: SimulatorHandle
    settings: Settings  # what the worker and the API use
    api_url: str
    workdir: Path
    pids: dict[str, int]

    async def testbed(self) -> Testbed:
        """A client of these servers, and the testbed the benchmarks drive them through."""
        client = await connect(self.settings)
        return Testbed(
            client, self.settings, self.sim, self.s3, self.tls, self.api_url, self.settings.task_queue
        )

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each server process and by this one (worker, client)."""
        return {name: cpu_seconds(pid) for name, pid in {**self.pids, "bench+worker": os.getpid()}.items()}

    @contextmanager
    def isolated(self, *stand_in_pids: int) -> Iterator[bool]:
        """The system under test (Temporal, the API, this process: worker and client) on one
        half of the machine's CPUs, the stand-ins for what production runs elsewhere (the
        provider's simulator, SeaweedFS as the object store, and any `stand_in_pids`, e.g. a
        webhook receiver) on the other, while the block runs. Yields False, changing nothing,
        on a machine with one CPU. Threads started later inherit their starter's CPUs."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            yield False
            return
        system, stand_ins = set(cpus[: len(cpus) // 2]), set(cpus[len(cpus) // 2 :])
        placed = {pid: system for pid in (self.pids["temporal"], self.pids["api"], os.getpid())}
        placed |= {pid: stand_ins for pid in (self.pids["simulator"], self.pids["seaweed"], *stand_in_pids)}
        try:
            for pid, where in placed.items():
                _pin(pid, where)
            yield True
        finally:
            for pid in placed:
                _pin(pid, set(cpus))

    async def shared_and_isolated(
        self, measure: Callable[[], Awaitable[dict[str, Any]]], *stand_in_pids: int
    ) -> dict[str, Any]:
        """`measure`'s figures with every process sharing the machine's CPUs, then those of a
        second run `isolated` (with `stand_in_pids`), prefixed `isolated_`; on a machine with
        one CPU, NOT_ISOLATED instead of the second run's."""
        shared = await measure()
        with self.isolated(*stand_in_pids) as isolated:
            alone = await measure() if isolated else None
        return {**shared, **({f"isolated_{k}": v for k, v in alone.items()} if alone else NOT_ISOLATED)}


NOT_ISOLATED = {"isolated": "one CPU: not run"}


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process on `cpus` (sched_setaffinity sets one thread's)."""
    for thread in os.listdir(f"/proc/{pid}/task"):
        with suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(thread), cpus)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to show where a phase's work went."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _https_ready(url: str, context: ssl.SSLContext) -> bool:
    try:
        return httpx.get(url, verify=context, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


@contextmanager
def servers(time_scale: float = 1000.0, *, api_env: dict[str, str] | None = None) -> Iterator[Servers]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        tls = make_dev_ca(root / "tls")
        context = tls.ssl_context()
        temporal = TemporalDevServer.start(
            root / "temporal", headless=True, search_attributes=SEARCH_ATTRIBUTES
        )
        stack.callback(temporal.stop)
        s3 = SeaweedServer.start(root / "seaweed")
        stack.callback(s3.stop)
        sim_port, api_port = free_port(), free_port()
        sim_url, api_url = f"https://127.0.0.1:{sim_port}", f"https://127.0.0.1:{api_port}"
        sim_argv = simulator_argv(port=sim_port, tls=tls, api_key=SIM_KEY, time_scale=time_scale)
        sim_argv += ["--seed", "1", "--log-level", "warning"]
        sim_process = spawn(sim_argv, cwd=ROOT, log_path=root / "simulator.log")
        stack.callback(stop_process, sim_process)
        temporal.wait_ready(60)
        s3.wait_ready(90)
        handle = SimulatorHandle(
            sim_url, SIM_KEY, str(tls.ca), None, httpx.Client(base_url=sim_url, verify=context)
        )
        wait_until(
            lambda: _https_ready(f"{sim_url}/_sim/stats", context),
            timeout=30,
            what="simulator",
            process=sim_process,
            log_path=root / "simulator.log",
        )
        settings = testbed_settings(temporal.address, handle, s3, tls, api_url, "bench")
        env = {
            **os.environ,
            **settings_env(settings),
            "API_RATE_LIMIT_PER_SECOND": "100000",
            "API_RATE_LIMIT_BURST": "100000",
            **(api_env or {}),
        }
        api_process = spawn(api_argv(port=api_port, tls=tls), cwd=ROOT, log_path=root / "api.log", env=env)
        stack.callback(stop_process, api_process)
        wait_until(
            lambda: _https_ready(f"{api_url}/readyz", context),
            timeout=30,
            what="API",
            process=api_process,
            log_path=root / "api.log",
        )
        pids = {
            "temporal": temporal.process.pid,
            "seaweed": s3.process.pid,
            "simulator": sim_process.pid,
            "api": api_process.pid,
        }
        yield Servers(temporal, s3, tls, handle, settings, api_url, root, pids)


async def start_clip(
    client: Client,
    task_queue: str,
    prompt: str,
    *,
    user_id: str = "bench",
    tuning: dict[str, Any] | None = None,
    webhooks: WebhookPlan | None = None,
) -> StartResult:
    """A benchmark's generation: the cheapest clip (480p, 4 s, no audio), a fresh intent."""
    return await start_generation(
        client,
        tenant="demo",
        idempotency_key=uuid.uuid4().hex,
        spec=GenerationSpec(
            user_id=user_id,
            params=VideoParams(prompt=prompt, quality=Quality.P480, duration=4, generate_audio=False),
        ),
        task_queue=task_queue,
        tuning=tuning,
        webhooks=webhooks,
    )


# Student's t for a two-sided 95 % interval, by degrees of freedom 1-30 (beyond: 1.96).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def paired_ratio(ratios: Sequence[float], goal: float) -> dict[str, Any]:
    """What paired rounds say of a ratio whose `goal` is a lower bound: each ratio is one
    round of a mode over the other mode's round of the same pair (run back to back, so the
    machine's drift cancels within a pair, not between pairs). Their geometric mean, its 95 %
    confidence interval, the pairs' spread, and the verdict: met only when the whole interval
    is at or above the goal, not met when it is all below, else not resolved at this noise."""
    if len(ratios) < 2:
        raise ValueError("a confidence interval needs at least two pairs")
    logs = [math.log(r) for r in ratios]
    t = _T95[len(logs) - 2] if len(logs) - 1 <= len(_T95) else 1.96
    mean, half = statistics.fmean(logs), t * statistics.stdev(logs) / math.sqrt(len(logs))
    low, high = math.exp(mean - half), math.exp(mean + half)
    if low >= goal:
        verdict = f"met (the whole interval >= {goal})"
    elif high < goal:
        verdict = f"not met (the whole interval < {goal})"
    else:
        verdict = f"not resolved (the interval holds {goal}: more pairs or a quieter machine)"
    return {
        "pairs": len(ratios),
        "ratio_geometric_mean": math.exp(mean),
        "ratio_ci95_low": low,
        "ratio_ci95_high": high,
        "ratio_spread_of_pairs_sd": statistics.stdev(ratios),
        "verdict": verdict,
    }


def write_result(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(
        json.dumps({"benchmark": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}, indent=2)
    )
    return path


def publish(name: str, title: str, figures: dict[str, Any]) -> None:
    """Prints a benchmark's figures under `title` and writes them to bench/results/<name>.json."""
    print_figures(title, figures)
    print(f"  written to {write_result(name, figures)}")


def print_figures(title: str, figures: dict[str, Any]) -> None:
    print(f"\n== {title}")
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {key:<48} {shown}")
