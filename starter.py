"""Start, watch and steer generations from a terminal (talks to Temporal directly).

reliable-video generate --user U --key K --prompt TEXT [--wait] [--json]
reliable-video status ID [--json] | approve ID | reject ID | cancel ID
reliable-video resolve ID (--no-task | --task TASK_ID) [--note TEXT]
reliable-video report [--since 24h|7d|ISO-TIME] [--tenant T] [--limit N] [--json | --csv]
reliable-video usage --tenant T [--from DAY] [--to DAY] [--group-by day|user|scenario|model] [--json]

`reliable-video` is installed into .venv/bin by `make install`; `python starter.py` is the same.
Temporal is TEMPORAL_ADDRESS when the environment or .env sets it, else the running dev stack
(`make up`: the ports in .local/ports.json, or DEV_TEMPORAL_PORT), as `make status` finds it.

Exit status: 0 done (for a generation: not failed); 1 the generation failed, or an unexpected
error (traceback printed); 2 bad arguments; 3 the key was used for a different request; 4 no
such generation; 5 not awaiting approval; 6 Temporal cannot be reached; 7 no unresolved create
to resolve (or the task named cannot be read); 8 over the tenant's credit budget (nothing was
started).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import NoReturn

from pydantic import ValidationError
from temporalio.client import Client

from devstack.exits import run_main
from devstack.stack import ConfigError, client_settings
from gptimage2 import KNOWN_MODELS, AspectRatio, Quality
from settings import Settings
from temporal_client import connect
from workflows import budget_control, budget_start
from workflows.budget import UsageGroup, UsageGroupBy
from workflows.control import (
    GenerationNotFound,
    IdempotencyConflict,
    NotAwaitingApproval,
    ResolutionRefused,
    cancel_generation,
    decide_approval,
    describe_generation,
    read_generations,
    resolve_create,
)
from workflows.models import CreateResolution, GenerationSpec, GenerationView, Scenario
from workflows.presets import with_preset
from workflows.report import ScenarioEconomics, economics, parse_since

BAR_WIDTH = 30
UNREACHABLE = 6
NOT_RESOLVABLE = 7
OVER_BUDGET = 8


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
    res = sub.add_parser(
        "resolve",
        help="resolve a create whose outcome is unknown, after checking the provider's dashboard",
    )
    res.add_argument("id")
    how = res.add_mutually_exclusive_group(required=True)
    how.add_argument("--no-task", action="store_true", help="the provider made no task: create again")
    how.add_argument("--task", metavar="TASK_ID", help="the provider made this task: adopt it")
    res.add_argument("--note", default=None, help="why (recorded with the resolution)")
    res.add_argument("--json", action="store_true")
    rep = sub.add_parser("report", help="unit economics per scenario and model from ended generations")
    rep.add_argument("--tenant", default=None)
    rep.add_argument("--since", default=None, help="ended since: a span (30m, 24h, 7d) or an ISO time")
    rep.add_argument("--limit", type=_positive, default=10_000, help="most generations read from visibility")
    shape = rep.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true")
    shape.add_argument("--csv", action="store_true")
    use = sub.add_parser("usage", help="a budgeted tenant's credits from its ledger (as GET /v1/usage)")
    use.add_argument("--tenant", required=True)
    use.add_argument("--from", dest="first", type=date.fromisoformat, default=None, help="first UTC day")
    use.add_argument("--to", dest="last", type=date.fromisoformat, default=None, help="last UTC day")
    use.add_argument("--group-by", choices=[g.value for g in UsageGroupBy], default=UsageGroupBy.DAY.value)
    use.add_argument("--json", action="store_true")
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
    print(f"generation {view.id}: {view.status.value} ({view.stage})")
    if view.failure_category:
        print(f"  failure: {view.failure_category.value}: {view.failure_message}")
    if view.unresolved_create:
        pending = view.unresolved_create
        print(
            f"  create outcome unknown since {pending.since:%H:%M:%S}, waiting until {pending.deadline:%H:%M:%S} UTC: {pending.reason}"
        )
    for done in view.resolutions:
        print(
            f"  resolved by ops at {done.at:%H:%M:%S}: {done.outcome}{f' ({done.note})' if done.note else ''}"
        )
    if view.guidance:
        print(f"  guidance: {view.guidance}")
    for output in view.outputs:
        print(
            f"  video: {output.url}\n  object: {output.object_key} sha256 {output.sha256} ({output.size_bytes} bytes)"
        )
    print(
        f"  credits {view.credits:g}, provider tasks {view.attempts}: {', '.join(view.provider_task_ids) or '-'}"
    )
    print(f"  Temporal UI: {settings.workflow_ui_url(view.id)}")


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
            result, _ = await budget_start.start_within_budget(
                client,
                tenant=args.tenant,
                idempotency_key=args.key,
                spec=spec,
                task_queue=settings.task_queue,
                budgeted=args.tenant in settings.tenant_budgets
                or await budget_control.has_admin_budget(client, args.tenant),
                configured=settings.tenant_budgets.get(args.tenant),
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
        elif args.command == "resolve":
            try:
                resolution = CreateResolution(task_id=args.task, note=args.note)
            except ValidationError as exc:
                for error in exc.errors():
                    print(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
                return 2
            view = await resolve_create(client, args.id, resolution)
        elif args.command in ("approve", "reject"):
            view = await decide_approval(client, args.id, approved=args.command == "approve")
        elif args.command == "usage":
            last = args.last or datetime.now(UTC).date()
            groups = await budget_control.usage(
                client,
                args.tenant,
                first_day=args.first or last.replace(day=1),
                last_day=last,
                group_by=UsageGroupBy(args.group_by),
            )
            if args.json:
                print(json.dumps([group.model_dump() for group in groups]))
            else:
                _print_usage(args.group_by, groups)
            return 0
        else:
            return await _report(client, args)
    except IdempotencyConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except GenerationNotFound as exc:
        print(f"error: no generation {exc}", file=sys.stderr)
        return 4
    except NotAwaitingApproval as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 5
    except ResolutionRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NOT_RESOLVABLE
    except budget_start.OverBudget as exc:
        print(f"error: {exc}", file=sys.stderr)
        return OVER_BUDGET
    _print_view(view, args.json, settings)
    return 0 if view.status.value != "failed" else 1


async def _report(client: Client, args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except ValueError as exc:
        print(f"error: --since: {exc}", file=sys.stderr)
        return 2
    found = await read_generations(client, tenant=args.tenant, since=since, limit=args.limit)
    if found.truncated:
        # On stderr, so --json and --csv stay parseable; the figures are not the whole window.
        print(
            f"note: stopped at the visibility limit ({found.limit} generations, the newest); "
            "the figures cover those alone: narrow --since or raise --limit",
            file=sys.stderr,
        )
    table = economics(found.rows)
    if args.json:
        print(json.dumps([row.model_dump() for row in table]))
    elif args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(ScenarioEconomics.model_fields)
        writer.writerows([("" if v is None else v) for v in row.model_dump().values()] for row in table)
    else:
        _print_report(table)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


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


# The text table's columns: heading, width, the figure and how it prints ("%": a share as percent).
REPORT_COLUMNS: list[tuple[str, int, str, str]] = [
    ("scenario", 18, "scenario", "s"),
    ("model", 28, "model", "s"),
    ("gens", 6, "generations", "d"),
    ("ok", 5, "delivered", "d"),
    ("fail", 5, "failed", "d"),
    ("canc", 5, "cancelled", "d"),
    ("rej", 5, "rejected", "d"),
    ("ok%", 7, "success_rate", "%"),
    ("att/ok", 8, "attempts_per_success", ".2f"),
    ("policy%", 9, "policy_failure_rate", "%"),
    ("retry%", 8, "retry_rate", "%"),
    ("p50 s", 8, "p50_latency_s", ".1f"),
    ("p95 s", 8, "p95_latency_s", ".1f"),
    ("cr/ok", 9, "credits_per_success", ".1f"),
]


def _print_report(table: list[ScenarioEconomics]) -> None:
    def cell(value: object, fmt: str) -> str:
        if value is None:
            return "-"
        if fmt == "%":
            return format(float(value) * 100, ".1f")  # type: ignore[arg-type]
        return format(value, fmt)

    def line(cells: list[str]) -> str:
        return "".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, (_, w, _, _)) in enumerate(zip(cells, REPORT_COLUMNS, strict=True))
        )

    print(line([heading for heading, *_ in REPORT_COLUMNS]))
    for row in table:
        print(line([cell(getattr(row, name), fmt) for _, _, name, fmt in REPORT_COLUMNS]))


def _print_usage(group_by: str, groups: list[UsageGroup]) -> None:
    print(f"{group_by:<24}{'charged':>10}{'reserved':>10}{'refunded':>10}{'gens':>6}{'deliv':>6}{'cr/ok':>9}")
    for g in groups:
        per = format(g.credits_per_successful_output, ".1f") if g.credits_per_successful_output else "-"
        print(
            f"{g.key[:23]:<24}{g.credits_charged:>10g}{g.credits_reserved:>10g}{g.credits_refunded:>10g}"
            f"{g.generations:>6}{g.delivered:>6}{per:>9}"
        )


def main() -> NoReturn:
    """`reliable-video` and `python starter.py`."""
    run_main(lambda: asyncio.run(run()))


if __name__ == "__main__":
    main()
