"""`make bench`: every benchmark in turn, each printing its figures and writing JSON."""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = ["bench.bench_core", "bench.bench_callbacks"]

if __name__ == "__main__":
    for name in BENCHMARKS:
        sys.argv = [name]
        runpy.run_module(name, run_name="__main__")
