"""Start, watch and steer generations from a terminal (talks to Temporal directly).

reliable-video generate --user U --key K --prompt TEXT [--wait] [--json]
reliable-video status ID [--json] | approve ID | reject ID | cancel ID
reliable-video report [--json]

`reliable-video` is installed into .venv/bin by `make install`; `python starter.py` is the same.
Temporal is TEMPORAL_ADDRESS when the environment or .env sets it, else the running dev stack
(`make up`: the ports in .local/ports.json, or DEV_TEMPORAL_PORT), as `make status` finds it.

Exit status: 0 done (for a generation: not failed); 1 the generation failed, or an unexpected
error (traceback printed); 2 bad arguments; 3 the key was used for a different request; 4 no
such generation; 5 not awaiting approval; 6 Temporal cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError
from temporalio.client import Client

from devstack.exits import run_main
from devstack.stack import ConfigError, client_settings
from gptimage2 import KNOWN_MODELS, AspectRatio, Quality
from settings import Settings
from temporal_client import connect
from workflows.control import (
    GenerationNotFound,
    IdempotencyConflict,
    NotAwaitingApproval,
    cancel_generation,
    decide_approval,
    describe_generation,
    generation_rows,
    start_generation,
)
from workflows.models import GenerationSpec, GenerationView, Scenario
from workflows.presets import with_preset
from workflows.report import ScenarioEconomics, economics

BAR_WIDTH = 30
UNREACHABLE = 6


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="start (or find, for the same user and key) a generation")
    gen.add_argument("--tenant", default="demo")
    gen.add_argument("--user", required=True, help="the end user's id")
    gen.add_argument("--key", required=True, help="idempotency key: one per user intent ('Generate' click)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--model", choices=KNOWN_MODELS, default=None, help="see GET /v1/models")
    gen.add_argument("--duration", type=int, default=None)
    gen.add_argument("--quality", choices=[q.value for q in Quality], default=None)
    gen.add_argument("--aspect-ratio", choices=[a.value for a in AspectRatio], default=None)
    gen.add_argument("--audio", dest="audio", action="store_true", default=None)
    gen.add_argument("--no-audio", dest="audio", action="store_false")
    gen.add_argument("--image-url", action="append", default=[])
    gen.add_argument("--n", type=int, default=None, help="results per task, where the model makes several")
    gen.add_argument("--scenario", choices=[s.value for s in Scenario], default=None)
    gen.add_argument("--draft-first", action="store_true")
    gen.add_argument("--wait", action="store_true", help="show progress until it ends")
    gen.add_argument("--json", action="store_true", help="print one JSON object")
    for name in ("status", "approve", "reject", "cancel"):
        cmd = sub.add_parser(name)
        cmd.add_argument("id")
        cmd.add_argument("--json", action="store_true")
        if name == "status":
            cmd.add_argument("--wait", action="store_true")
    rep = sub.add_parser("report", help="unit economics per scenario from finished generations")
    rep.add_argument("--tenant", default=None)
    rep.add_argument("--json", action="store_true")
    return parser


def _spec(args: argparse.Namespace) -> GenerationSpec:
    fields = {
        "user_id": args.user,
        "prompt": args.prompt,
        "model": args.model,
        "duration": args.duration,
        "quality": args.quality,
        "aspect_ratio": args.aspect_ratio,
        "generate_audio": args.audio,
        "image_urls": args.image_url,
        "n": args.n,
        "scenario": args.scenario,
        "draft_first": args.draft_first,
    }
    sent = {k: v for k, v in fields.items() if v is not None}
    return GenerationSpec.model_validate(with_preset(sent, sent))  # the scenario fills the rest


def _print_view(view: GenerationView, as_json: bool, settings: Settings) -> None:
    if as_json:
        print(view.model_dump_json())
        return
    ui = settings.temporal_ui_url.rstrip("/")
    print(f"generation {view.id}: {view.status.value} ({view.stage})")
    if view.failure_category:
        print(f"  failure: {view.failure_category.value}: {view.failure_message}")
    if view.guidance:
        print(f"  guidance: {view.guidance}")
    for output in view.outputs:
        print(
            f"  video: {output.url}\n  object: {output.object_key} sha256 {output.sha256} ({output.size_bytes} bytes)"
        )
    print(
        f"  credits {view.credits:g}, provider tasks {view.attempts}: {', '.join(view.provider_task_ids) or '-'}"
    )
    print(f"  Temporal UI: {ui}/namespaces/{settings.temporal_namespace}/workflows/{view.id}")


async def _watch(client: Client, workflow_id: str, show: bool) -> GenerationView:
    while True:
        view = await describe_generation(client, workflow_id)
        if show:
            filled = int(BAR_WIDTH * view.progress / 100)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            sys.stderr.write(f"\r[{bar}] {view.progress:5.1f}% {view.status.value:<17} {view.stage[:40]:<40}")
            sys.stderr.flush()
        if view.is_terminal:
            if show:
                sys.stderr.write("\n")
            return view
        await asyncio.sleep(0.5)  # a terminal poll for a human, not synchronisation


async def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = client_settings()
    except (ConfigError, ValidationError) as exc:
        for line in _problems(exc):
            print(f"error: {line}", file=sys.stderr)
        return 2
    try:
        client = await connect(settings)
    except RuntimeError as exc:
        # One line, not the SDK's traceback: the usual cause is a stack that is not running.
        print(
            f"error: cannot reach Temporal at {settings.temporal_address} ({_connect_failure(exc)}); "
            "start the dev stack with `make up`, or set TEMPORAL_ADDRESS",
            file=sys.stderr,
        )
        return UNREACHABLE
    try:
        if args.command == "generate":
            try:
                spec = _spec(args)
            except ValidationError as exc:
                for error in exc.errors():
                    print(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
                return 2
            result = await start_generation(
                client,
                tenant=args.tenant,
                idempotency_key=args.key,
                spec=spec,
                task_queue=settings.task_queue,
                metrics_tenant_label=settings.metrics_tenant_label,
            )
            view = result.view
            if not args.json:
                print(
                    ("started" if result.created else "found existing") + f" generation {view.id}",
                    file=sys.stderr,
                )
            if args.wait:
                view = await _watch(client, view.id, show=not args.json)
        elif args.command == "status":
            view = (
                await _watch(client, args.id, show=not args.json)
                if args.wait
                else await describe_generation(client, args.id)
            )
        elif args.command == "cancel":
            view = await cancel_generation(client, args.id)
        elif args.command in ("approve", "reject"):
            view = await decide_approval(client, args.id, approved=args.command == "approve")
        else:
            table = economics(await generation_rows(client, tenant=args.tenant))
            if args.json:
                print(json.dumps([row.model_dump() for row in table]))
            else:
                _print_report(table)
            return 0
    except IdempotencyConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except GenerationNotFound as exc:
        print(f"error: no generation {exc}", file=sys.stderr)
        return 4
    except NotAwaitingApproval as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 5
    _print_view(view, args.json, settings)
    return 0 if view.status.value != "failed" else 1


def _problems(exc: ConfigError | ValidationError) -> list[str]:
    if isinstance(exc, ValidationError):
        return [str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()]
    return [str(exc)]


def _connect_failure(exc: RuntimeError) -> str:
    """A few words for why `Client.connect` failed (the SDK's message is a Rust error chain)."""
    text = str(exc)
    if "ConnectionRefused" in text or "Connection refused" in text:
        return "connection refused"
    return text.removeprefix("Failed client connect: ").splitlines()[0][:200]


def _print_report(table: list[ScenarioEconomics]) -> None:
    header = f"{'scenario':<18}{'gens':>6}{'ok%':>7}{'att/ok':>8}{'policy%':>9}{'retry%':>8}{'p50 s':>8}{'p95 s':>8}{'cr/ok':>9}"
    print(header)
    for row in table:

        def num(v: float | None, fmt: str) -> str:
            return format(v, fmt) if v is not None else "-"

        print(
            f"{row.scenario:<18}{row.generations:>6}{row.success_rate * 100:>7.1f}{num(row.attempts_per_success, '.2f'):>8}"
            f"{row.policy_failure_rate * 100:>9.1f}{row.retry_rate * 100:>8.1f}{num(row.p50_latency_s, '.1f'):>8}"
            f"{num(row.p95_latency_s, '.1f'):>8}{num(row.credits_per_success, '.1f'):>9}"
        )


def main() -> NoReturn:
    """`reliable-video` and `python starter.py`."""
    run_main(lambda: asyncio.run(run()))


if __name__ == "__main__":
    main()
