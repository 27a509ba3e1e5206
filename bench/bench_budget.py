"""Spend control's price at the edge (issue 13). `python -m bench.bench_budget`

POST /v1/generations latency, p50 and p99, for a tenant with a credit budget (the API reserves
on the tenant's ledger workflow before it starts the generation) against one without, in the
same run, on the same servers, in interleaved rounds: one request at a time, then bursts of
concurrent ones. The generations' tasks never end (`#gen=` far beyond the run), so what runs
behind the requests is the same for both tenants and small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from devstack.exits import run_main
from devstack.state import DEFAULTS
from temporal_client import connect
from worker import make_provider, product_worker
from workflows.report import percentile

from ._common import publish, servers

BUDGETED, FREE = "acme", "demo"  # the testbed's tenants
ROUNDS = 10


def tenant_keys() -> dict[str, str]:
    pairs = (pair.split(":", 1) for pair in DEFAULTS.api_keys.get_secret_value().split(","))
    return {tenant: key for tenant, key in pairs}


async def post(http: httpx.AsyncClient, key: str) -> float:
    body = {
        "user_id": "bench",
        "prompt": f"A bench clip {uuid.uuid4().hex[:8]} #gen=1000000000",
        "duration": 4,
        "quality": "480p",
        "generate_audio": False,
    }
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    started = time.perf_counter()
    response = await http.post("/v1/generations", json=body, headers=headers)
    elapsed = time.perf_counter() - started
    if response.status_code != 202:
        raise RuntimeError(f"POST answered {response.status_code}: {response.text[:300]}")
    return elapsed * 1000


async def run(sequential: int, burst: int) -> dict[str, Any]:
    budgets = {BUDGETED: {"daily": 1e12, "monthly": 1e12}}
    api_env = {"TENANT_BUDGETS": json.dumps(budgets), "BUDGET_RECONCILE_SECONDS": "0"}
    with servers(api_env=api_env) as srv:
        client = await connect(srv.settings)
        keys = tenant_keys()
        latencies: dict[str, dict[str, list[float]]] = {
            mode: {"one_at_a_time": [], "burst": []} for mode in ("on", "off")
        }
        with ThreadPoolExecutor(max_workers=16) as executor:
            async with (
                make_provider(srv.settings) as provider,
                product_worker(client, srv.settings, provider, executor=executor),
                httpx.AsyncClient(base_url=srv.api_url, verify=srv.tls.ssl_context(), timeout=60) as http,
            ):
                for tenant in (BUDGETED, FREE):  # warm up: connections, the ledger
                    await asyncio.gather(*(post(http, keys[tenant]) for _ in range(5)))
                for _ in range(ROUNDS):
                    for mode, tenant in (("on", BUDGETED), ("off", FREE)):
                        for _ in range(sequential // ROUNDS):
                            latencies[mode]["one_at_a_time"].append(await post(http, keys[tenant]))
                        latencies[mode]["burst"] += await asyncio.gather(
                            *(post(http, keys[tenant]) for _ in range(burst))
                        )
    figures: dict[str, Any] = {}
    for kind in ("one_at_a_time", "burst"):
        for mode in ("on", "off"):
            values = latencies[mode][kind]
            figures[f"{kind}_budgets_{mode}_requests"] = len(values)
            figures[f"{kind}_budgets_{mode}_p50_ms"] = percentile(values, 50)
            figures[f"{kind}_budgets_{mode}_p99_ms"] = percentile(values, 99)
        for q in ("p50", "p99"):
            figures[f"{kind}_{q}_ratio_on_vs_off"] = (
                figures[f"{kind}_budgets_on_{q}_ms"] / figures[f"{kind}_budgets_off_{q}_ms"]
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequential", type=int, default=100, help="one-at-a-time POSTs per mode")
    parser.add_argument("--burst", type=int, default=10, help="concurrent POSTs per round and mode")
    args = parser.parse_args()
    figures = asyncio.run(run(args.sequential, args.burst))
    publish("budget", "POST /v1/generations latency with budgets on (reserve first) vs off", figures)


if __name__ == "__main__":
    run_main(main)
