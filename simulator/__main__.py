"""`python -m simulator`: the GPTImage2 simulator as a process (see `simulator/app.py`).

Example::

    python -m simulator --port 9100 --tls-cert .local/tls/server.pem --tls-key .local/tls/server-key.pem \\
        --time-scale 10 --allow-private-callbacks --callback-cafile .local/tls/ca.pem
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path

import uvicorn

from .app import create_app
from .config import FaultConfig, SimulatorSettings, default_cache_dir

logger = logging.getLogger("simulator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="A local GPTImage2 task API with fault injection. Its /_sim/ control surface has "
        "no authentication: keep it on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--tls-cert", help="PEM certificate chain (leaf first); HTTPS when given")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="simulated seconds per real second (60: a minute per second)",
    )
    parser.add_argument("--api-key", default="sim-key", help="the Bearer token clients must send")
    parser.add_argument(
        "--allow-private-callbacks",
        action="store_true",
        help="accept loopback/private hosts in callback_url and image_urls (the real provider refuses them)",
    )
    parser.add_argument("--callback-cafile", help="CA bundle trusted for callbacks and image fetches")
    parser.add_argument("--public-base-url", help="base of result URLs (default: the host the request used)")
    parser.add_argument("--seed", type=int, help="RNG seed for timings and faults (default: random, logged)")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help=f"video cache (default {default_cache_dir()})"
    )
    parser.add_argument(
        "--config", type=Path, help="JSON file with the initial fault config (see /_sim/config)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.time_scale <= 0:
        parser.error("--time-scale must be positive")
    try:
        faults = FaultConfig.model_validate_json(args.config.read_text()) if args.config else FaultConfig()
    except (OSError, ValueError) as exc:
        parser.error(f"--config: {exc}")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = SimulatorSettings(
        api_key=args.api_key,
        time_scale=args.time_scale,
        allow_private=args.allow_private_callbacks,
        callback_cafile=args.callback_cafile,
        public_base_url=args.public_base_url,
        seed=args.seed,
        cache_dir=args.cache_dir or default_cache_dir(),
        faults=faults,
    )
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        logger.warning("listening on %s: /_sim/ (faults, clock, task list) has no authentication", args.host)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
