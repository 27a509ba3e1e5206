"""`python -m api [--host 127.0.0.1] [--port N] [--tls-cert F --tls-key F]`"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from .app import create_app
from .config import ApiConfig
from .server import uvicorn_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description="Serve the HTTP API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain (serves HTTPS when given)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = ApiConfig()
    app = create_app(config=config)
    uvicorn.Server(
        uvicorn_config(
            app,
            host=args.host,
            port=args.port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            config=config,
            log_level=args.log_level,
        )
    ).run()


if __name__ == "__main__":
    main()
