"""The provider client's CPU per request (gptimage2.GPTImage2Client, on aiohttp), against the
same task reads through a plain httpx.AsyncClient (the client it used before), in the same run
against the same simulator over TLS. `python -m bench.http_clients`

A burst of generations puts a hundred requests in flight at once: httpx's connection pool
scans its connections and waiters on every request, so its CPU per request grows with the
burst. Both sides read and parse the same task object (ProviderTask), with warm connections
(a first round opens them and is not counted), in interleaved rounds; best of each.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from devstack.exits import run_main
from gptimage2 import ProviderTask

from ._common import SIM_KEY, publish, servers

ROUNDS = 4


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _ms_per_request(read: Callable[[], Awaitable[Any]], requests: int, in_flight: int) -> float:
    started = _cpu()
    for _ in range(requests // in_flight):
        await asyncio.gather(*(read() for _ in range(in_flight)))
    return (_cpu() - started) * 1000 / (requests // in_flight * in_flight)


async def run(requests: int, in_flight: int) -> dict[str, Any]:
    with servers() as srv:
        tb = await srv.testbed()
        async with tb.provider() as ours:
            task = await ours.create_task(
                {"prompt": "a bench read #gen=1", "quality": "480p", "duration": 4, "generate_audio": False}
            )
            async with httpx.AsyncClient(
                base_url=srv.sim.base_url,
                verify=srv.tls.ssl_context(),
                headers={"Authorization": f"Bearer {SIM_KEY}", "Accept": "application/json"},
                limits=httpx.Limits(keepalive_expiry=1.0),
            ) as plain:

                async def httpx_read() -> ProviderTask:
                    response = await plain.get(f"/v1/tasks/{task.id}")
                    return ProviderTask.model_validate_json(response.content)

                async def our_read() -> ProviderTask:
                    return await ours.get_task(task.id)

                rounds: dict[str, list[float]] = {"httpx": [], "ours": []}
                for read in (httpx_read, our_read):
                    await _ms_per_request(read, in_flight, in_flight)  # open the connections
                for _ in range(ROUNDS):
                    for name, read in (("httpx", httpx_read), ("ours", our_read)):
                        rounds[name].append(await _ms_per_request(read, requests, in_flight))
    base, mine = min(rounds["httpx"]), min(rounds["ours"])
    return {
        "requests_per_round": requests,
        "in_flight": in_flight,
        "httpx_cpu_ms_per_request_rounds": [round(v, 3) for v in rounds["httpx"]],
        "ours_cpu_ms_per_request_rounds": [round(v, 3) for v in rounds["ours"]],
        "httpx_cpu_ms_per_request": base,
        "ours_cpu_ms_per_request": mine,
        "ours_over_httpx": mine / base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    figures = asyncio.run(run(args.requests, args.in_flight))
    publish("http_clients", "provider client CPU per request, against plain httpx (lower is better)", figures)


if __name__ == "__main__":
    run_main(main)
