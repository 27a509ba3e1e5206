"""The ops page (`GET /ops`): what the seed asks ops to watch, on one server-rendered page.

Per scenario and model over a chosen window (1 h, 24 h, 7 d): generations, success rate,
attempts per success, policy failure rate, retry rate, p50/p95 and credits per successful
output; the latency distribution; failures by category over time; the generations in flight,
the slow and the stuck, each linked to its Temporal Web UI page. Every figure is
workflows.report's (the same as `starter.py report`), over visibility. Plain HTML and inline
SVG: no JavaScript, nothing fetched from elsewhere, so it works behind any proxy and in any
browser, and the page's own Content-Security-Policy forbids scripts outright.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from temporalio.client import Client

from settings import Settings
from workflows import control
from workflows.models import GenerationInput
from workflows.report import (
    ALL,
    WINDOWS,
    Bucket,
    InFlight,
    ScenarioEconomics,
    TimeSlot,
    economics,
    expected_latencies,
    failures_over_time,
    in_flight,
    latency_distribution,
    span_label,
)

from .config import ApiConfig
from .errors import ApiError, FieldError
from .temporal import TemporalGateway

DEFAULT_WINDOW = "24h"
# A generation still running this long after its start has outlived its job TTL: the workflow
# should have ended it (a worker down, a workflow task failing).
JOB_TTL = timedelta(seconds=GenerationInput.model_fields["job_ttl_seconds"].default)
# The page's only styling; `default-src 'none'` keeps out scripts and every outside fetch.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CATEGORY_COLOURS = {
    "policy": "#b45309",
    "transient": "#2563eb",
    "internal": "#dc2626",
    "expired": "#7c3aed",
    "timeout": "#0f766e",
    "invalid": "#6b7280",
}


def window_of(value: str | None) -> str:
    """The `window` query parameter, or a 422 naming it."""
    window = value or DEFAULT_WINDOW
    if window not in WINDOWS:
        message = f"must be one of {', '.join(WINDOWS)}"
        raise ApiError(
            422, "validation_error", f"window {message}", fields=[FieldError(field="window", message=message)]
        )
    return window


@dataclass(frozen=True)
class OpsSnapshot:
    window: str
    now: datetime
    table: list[ScenarioEconomics]
    latency: list[Bucket]
    failures: list[TimeSlot]
    flights: list[InFlight]
    closed_truncated: int | None  # the limit, when the window held more closed generations
    running_truncated: int | None


class OpsService:
    def __init__(self, gateway: TemporalGateway, settings: Settings, config: ApiConfig) -> None:
        self.gateway = gateway
        self.settings = settings
        self.config = config

    async def snapshot(self, window: str) -> OpsSnapshot:
        now = datetime.now(UTC)
        span, slots = WINDOWS[window]
        limit = self.config.ops_visibility_limit

        async def read(client: Client) -> tuple[control.GenerationRows, control.GenerationRows]:
            return await asyncio.gather(
                control.read_generations(client, since=now - span, limit=limit),
                control.read_generations(client, running=True, limit=limit),
            )

        closed, running = await self.gateway.call(read)
        expected = expected_latencies(closed.rows, min_samples=self.config.expected_min_samples)
        return OpsSnapshot(
            window=window,
            now=now,
            table=economics(closed.rows),
            latency=latency_distribution(closed.rows),
            failures=failures_over_time(closed.rows, start=now - span, end=now, slots=slots),
            flights=in_flight(running.rows, now=now, expected=expected, job_ttl=JOB_TTL),
            closed_truncated=limit if closed.truncated else None,
            running_truncated=limit if running.truncated else None,
        )

    async def page(self, window: str) -> str:
        return render_page(await self.snapshot(window), self.settings)


# ---- rendering --------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#111}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
tr.total td{font-weight:600}
.note{background:#fef3c7;padding:.4rem .6rem;border-radius:4px}
.stuck{color:#b91c1c;font-weight:600}.slow{color:#b45309}
nav a{margin-right:.8rem}nav a.on{font-weight:700;text-decoration:none;color:#111}
svg text{font:11px system-ui,sans-serif;fill:#333}
.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
"""


def _num(value: float | None, fmt: str, scale: float = 1) -> str:
    return "-" if value is None else format(value * scale, fmt)


def _economics_table(table: list[ScenarioEconomics]) -> str:
    head = (
        "<tr><th>scenario</th><th>model</th><th>generations</th><th>delivered</th><th>failed</th>"
        "<th>cancelled</th><th>rejected</th><th>success</th><th>attempts/success</th><th>policy failures</th>"
        "<th>retries</th><th>p50</th><th>p95</th><th>credits/success</th></tr>"
    )
    rows = []
    for r in table:
        cells = [
            escape(r.scenario),
            escape(r.model or "-"),
            str(r.generations),
            str(r.delivered),
            str(r.failed),
            str(r.cancelled),
            str(r.rejected),
            _num(r.success_rate, ".1f", 100) + " %",
            _num(r.attempts_per_success, ".2f"),
            _num(r.policy_failure_rate, ".1f", 100) + " %",
            _num(r.retry_rate, ".1f", 100) + " %",
            _num(r.p50_latency_s, ".1f") + "\u2009s",
            _num(r.p95_latency_s, ".1f") + "\u2009s",
            _num(r.credits_per_success, ".1f"),
        ]
        css = ' class="total"' if r.scenario == ALL else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return "<p>No generation ended in this window.</p>"
    return f'<table id="economics">{head}{"".join(rows)}</table>'


# Chart geometry (px): the plot sits right of PAD and above BOTTOM, where the labels go.
WIDTH, HEIGHT, PAD, BOTTOM = 640, 200, 30, 30
PLOT_HEIGHT = HEIGHT - BOTTOM - 16  # room above the tallest bar for its count


def _svg(chart_id: str, title: str, body: list[str]) -> str:
    axis = f'<line x1="{PAD}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - BOTTOM}" stroke="#999"/>'
    return (
        f'<svg id="{chart_id}" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}">{axis}{"".join(body)}</svg>'
    )


def bar_chart(buckets: list[Bucket], *, chart_id: str, title: str) -> str:
    """One bar per bucket, its height the count (`rect.bar`, `data-count`)."""
    slot = (WIDTH - PAD) / max(1, len(buckets))
    top = max([b.count for b in buckets] + [1])
    parts = []
    for i, b in enumerate(buckets):
        h = PLOT_HEIGHT * b.count / top
        x = PAD + i * slot
        y = HEIGHT - BOTTOM - h
        parts.append(
            f'<rect class="bar" data-count="{b.count}" x="{x + 4:.1f}" y="{y:.1f}" '
            f'width="{slot - 8:.1f}" height="{h:.1f}" fill="#2563eb"><title>{escape(b.label)}: {b.count}</title></rect>'
            f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{escape(b.label)}</text>'
        )
        if b.count:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{b.count}</text>'
            )
    return _svg(chart_id, title, parts)


def stacked_chart(slots: list[TimeSlot], *, chart_id: str, title: str, span: timedelta) -> str:
    """A column per time slot, stacked by failure category (`rect.bar`, `data-category`)."""
    step = (WIDTH - PAD) / max(1, len(slots))
    top = max([sum(s.failures.values()) for s in slots] + [1])
    fmt = "%H:%M" if span <= timedelta(days=1) else "%a %H:%M"
    label_every = max(1, len(slots) // 6)
    parts = []
    for i, s in enumerate(slots):
        x = PAD + i * step
        y = float(HEIGHT - BOTTOM)
        for category, count in sorted(s.failures.items()):
            h = PLOT_HEIGHT * count / top
            y -= h
            colour = CATEGORY_COLOURS.get(category, "#111")
            parts.append(
                f'<rect class="bar" data-category="{escape(category)}" data-count="{count}" x="{x + 1:.1f}" '
                f'y="{y:.1f}" width="{step - 2:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{s.start:%Y-%m-%d %H:%M} UTC: {count} {escape(category)}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}">{s.start.strftime(fmt)}</text>')
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{name}</span>' for name, colour in CATEGORY_COLOURS.items()
    )
    return _svg(chart_id, title, parts) + f'<div class="legend">{legend}</div>'


def _flights_table(flights: list[InFlight], settings: Settings) -> str:
    if not flights:
        return "<p>Nothing in flight.</p>"
    rows = []
    for f in flights:
        r = f.row
        flag = (
            '<span class="stuck">stuck: past its job TTL</span>'
            if f.stuck
            else '<span class="slow">taking longer than usual</span>'
            if f.slow
            else ""
        )
        rows.append(
            f'<tr><td><a href="{escape(settings.workflow_ui_url(r.id))}">{escape(r.id)}</a></td>'
            f"<td>{escape(r.scenario)}</td><td>{escape(r.model)}</td><td>{escape(r.status)}</td>"
            f"<td>{span_label(f.age_s)}</td><td>{_num(f.expected_s, '.0f')} s</td><td>{flag}</td></tr>"
        )
    head = (
        "<tr><th>generation (Temporal UI)</th><th>scenario</th><th>model</th><th>status</th>"
        "<th>running for</th><th>usual (p95)</th><th></th></tr>"
    )
    return f'<table id="in-flight">{head}{"".join(rows)}</table>'


def render_page(snap: OpsSnapshot, settings: Settings) -> str:
    span, _ = WINDOWS[snap.window]
    nav = "".join(f'<a href="?window={w}"{" class=on" if w == snap.window else ""}>{w}</a>' for w in WINDOWS)
    notes = [
        f"Only the newest {limit} {what} were read (the visibility limit, API_OPS_VISIBILITY_LIMIT): "
        "figures cover those alone."
        for limit, what in (
            (snap.closed_truncated, "ended generations"),
            (snap.running_truncated, "running generations"),
        )
        if limit is not None
    ]
    stuck = sum(1 for f in snap.flights if f.stuck)
    slow = sum(1 for f in snap.flights if f.slow)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>reliable-video ops · {snap.window}</title>
<style>{_STYLE}</style></head><body>
<h1>reliable-video ops</h1>
<nav>window: {nav}</nav>
<p>{snap.now:%Y-%m-%d %H:%M:%S} UTC · generations ended in the last {snap.window}; cancelled and
rejected drafts are counted apart from failures (success = delivered ÷ (delivered + failed));
credits per success = every credit spent ÷ delivered; latency excludes time awaiting approval.</p>
{"".join(f'<p class="note">{escape(n)}</p>' for n in notes)}
<h2>By scenario and model</h2>
{_economics_table(snap.table)}
<h2>Latency of delivered generations</h2>
{bar_chart(snap.latency, chart_id="latency-chart", title="delivered generations by latency")}
<h2>Failures by category over time</h2>
{stacked_chart(snap.failures, chart_id="failures-chart", title="failed generations by category", span=span)}
<h2>In flight: {len(snap.flights)} ({slow} slower than usual, {stuck} stuck)</h2>
{_flights_table(snap.flights, settings)}
</body></html>
"""
