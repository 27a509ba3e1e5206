"""`make chaos` / `python -m chaos [--only 1,3] [--scale N] [--keep DIR]`: issue 15's
reliability table as a run on real servers of its own (free ports, its own state directory),
one line of counts per scenario, a summary line, exit status 1 if anything was lost."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from chaos.harness import Harness
from chaos.scenarios import SCENARIOS, Outcome
from chaos.servers import ChaosServers
from devstack.exits import run_main

# The simulator's clock against ours: a 4 s 480p clip (about 54 provider seconds) takes ~3 s.
TIME_SCALE = 20.0
WORKERS = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every scenario's generation count")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the servers' state and logs in this directory"
    )
    return parser


async def run(args: argparse.Namespace, root: Path) -> int:
    chosen = [int(n) for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in chosen if n not in SCENARIOS]
    if unknown:
        print(f"error: --only: no scenario {unknown}; there are {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    servers = ChaosServers(root, time_scale=TIME_SCALE, workers=WORKERS)
    began = time.monotonic()
    servers.start()
    outcomes: list[Outcome] = []
    try:
        harness = await Harness.connect(servers)
        print(f"chaos: servers up in {time.monotonic() - began:.0f} s (state and logs in {root})", flush=True)
        for number in [n for n in SCENARIOS if n in chosen]:
            scenario, count = SCENARIOS[number]
            outcome = await scenario(harness, max(1, round(count * args.scale)))
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
            for problem in outcome.checked.problems[:10]:
                print(f"    lost: {problem}", flush=True)
    finally:
        servers.stop()
    lost = sum(o.checked.lost for o in outcomes)
    print(
        f"chaos: {len(outcomes)} scenarios, {'nothing lost' if not lost else f'{lost} LOST'}, "
        f"{time.monotonic() - began:.0f} s",
        flush=True,
    )
    return 1 if lost else 0


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    args = _parser().parse_args()

    def go() -> int:
        if args.keep:
            return asyncio.run(run(args, args.keep.resolve()))
        root = Path(tempfile.mkdtemp(prefix="chaos-"))
        try:
            return asyncio.run(run(args, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)

    run_main(go)


if __name__ == "__main__":
    main()
