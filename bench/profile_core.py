"""Where a generation's CPU goes: bench_core's burst rounds alone, for a profiler to watch.
`python -m bench.profile_core [--bare]`

bench_core interleaves the product's rounds with the bare workflow's, so a profile of it mixes
the two. This runs only one of them (the product's generations, or with `--bare` the bare
3-activity workflow on a worker built the same way) and prints, per round and as the minimum
and median over the rounds, the rate and the CPU each process spent per workflow. The minimum
is the figure to compare between two runs on a shared machine: other load only ever adds.

This process hosts the worker and the client, as in bench_core. To profile it:

    .venv/bin/py-spy record --gil -r 250 --format raw -o core.raw -- \\
        .venv/bin/python -m bench.profile_core

(`--gil` counts only the thread holding the GIL, i.e. Python code running, not I/O waits). The
servers' pids are printed too, for `py-spy record -p PID` on the API or the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from concurrent.futures import ThreadPoolExecutor

from devstack.exits import run_main
from worker import product_worker

from ._common import servers
from .bench_core import BARE_STEPS, TIME_SCALE, bare_rate, generation_run

Round = tuple[float, dict[str, float]]  # workflows/s, CPU ms per workflow by process


async def run(count: int, rounds: int, bare: bool) -> list[Round]:
    with servers(time_scale=TIME_SCALE) as srv:
        tb = await srv.testbed()
        client = tb.client
        print(f"  processes: {srv.pids}", flush=True)
        results: list[Round] = []
        with ThreadPoolExecutor(max_workers=64) as executor:
            async with (
                tb.provider() as provider,
                product_worker(client, tb.settings, provider, executor=executor),
            ):
                await generation_run(tb, 5, TIME_SCALE)  # warm up, as bench_core does
                for _ in range(rounds):
                    if bare:
                        results.append(await bare_rate(client, count, BARE_STEPS, srv.cpu_seconds, executor))
                    else:
                        figures = await generation_run(tb, count, TIME_SCALE, cpu=srv.cpu_seconds)
                        cpu = {
                            k.removeprefix("cpu_ms_"): v
                            for k, v in figures.items()
                            if k.startswith("cpu_ms_")
                        }
                        results.append((figures["generations_per_second"], cpu))
                    print(f"  round: {_line(*results[-1])}", flush=True)
        return results


def _line(rate: float, cpu: dict[str, float]) -> str:
    total = sum(cpu.values())
    return (
        f"{rate:.1f}/s, CPU ms per workflow "
        + " ".join(f"{k}={v:.1f}" for k, v in cpu.items())
        + f" total={total:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generations", type=int, default=100, help="workflows per round (a burst)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bare", action="store_true", help="the bare 3-activity workflow instead")
    args = parser.parse_args()
    results = asyncio.run(run(args.generations, args.rounds, args.bare))
    names = results[0][1].keys()
    best = max(rate for rate, _ in results), {k: min(cpu[k] for _, cpu in results) for k in names}
    median = (
        statistics.median(rate for rate, _ in results),
        {k: statistics.median(cpu[k] for _, cpu in results) for k in names},
    )
    print(
        f"\n== {'bare workflow' if args.bare else 'generations'}: {args.rounds} rounds of {args.generations}"
    )
    print(f"  best (max rate, min CPU): {_line(*best)}")
    print(f"  median:                   {_line(*median)}")


if __name__ == "__main__":
    run_main(main)
