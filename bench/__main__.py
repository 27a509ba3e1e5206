"""`make bench`: every benchmark in turn, each in its own process, printing its figures and
writing JSON under bench/results/."""

from __future__ import annotations

import subprocess
import sys

from devstack.exits import run_main

BENCHMARKS = [
    "bench.bench_core",
    "bench.bench_callbacks",
    "bench.bench_metrics",
    "bench.bench_budget",
    "bench.bench_webhooks",
    "bench.http_clients",
]


def main() -> None:
    failed = [name for name in BENCHMARKS if subprocess.run([sys.executable, "-m", name]).returncode != 0]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    run_main(main)
