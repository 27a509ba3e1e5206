"""`python -m devstack up|down|status|demo [--state-dir DIR]`; see devstack.stack for details."""

from __future__ import annotations

import argparse

from devstack.exits import run_main
from devstack.stack import down, state_dir, status, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="The local dev stack.")
    parser.add_argument("command", choices=["up", "down", "status", "demo"])
    parser.add_argument(
        "--state-dir", help="where state and logs live (default: $DEVSTACK_DIR or .local/ in the repo)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="demo: seconds to wait for delivery (default 600)"
    )
    args = parser.parse_args(argv)
    state = state_dir(args.state_dir)
    if args.command == "up":
        return up(state)
    if args.command == "down":
        return down(state)
    if args.command == "status":
        return status(state)
    from devstack.demo import demo

    return demo(state, timeout=args.timeout)


if __name__ == "__main__":
    run_main(main)
