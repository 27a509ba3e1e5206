"""The ops page, `starter.py report` and expected ready times, against real servers.

One run of generations for a tenant of its own (module fixture): five delivered of one shape
(Seedance, 11 s, 720p, a shape no other test uses), a policy failure, a cancel, a rejected draft,
and one still generating. Then: the page behind the ops key, its charts in a real Chromium
(Debian's, `make chromium`; screenshot saved), the report's columns, `--since`, `--csv` and
its visibility-limit note, and the running generation's `expected_ready_at` from the others'
p95, past which its stage says it is taking longer than usual.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import starter
from api.expected import TAKING_LONGER
from devstack.testbed import Testbed, settings_env
from settings import get_settings
from tests.helpers import assert_eventually
from tests.helpers.flow import finished, first_task_id, prompt, replayer, start, wait_for_status
from workflows import control
from workflows import search_attributes as sa
from workflows.models import GenerationStatus
from workflows.report import percentile

SHAPE: dict[str, Any] = {"duration": 11, "quality": "720p"}
DELIVERED = 5  # API_EXPECTED_MIN_SAMPLES' default: the shape has an expectation
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / ".local" / "ops-page.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class OpsRun:
    tenant: str
    delivered: list[str]
    rejected: str
    running: str


@pytest.fixture(scope="module")
async def ops_run(stack: Testbed) -> AsyncIterator[OpsRun]:
    tenant = f"ops-{uuid.uuid4().hex[:8]}"

    async def delivered() -> str:
        started = await start(stack, prompt("A lighthouse at dusk"), tenant=tenant, **SHAPE)
        assert (await finished(stack, started.view.id)).status is GenerationStatus.DELIVERED
        return started.view.id

    async def policy() -> None:
        started = await start(stack, prompt("Refused", "#policy"), tenant=tenant, quality="480p", duration=4)
        assert (await finished(stack, started.view.id)).status is GenerationStatus.FAILED

    async def cancelled() -> None:
        started = await start(
            stack, prompt("Cancelled", "#gen=100000"), tenant=tenant, quality="480p", duration=4
        )
        await first_task_id(stack, started.view.id)
        await control.cancel_generation(stack.client, started.view.id)
        assert (await finished(stack, started.view.id)).status is GenerationStatus.CANCELLED

    async def rejected() -> str:
        started = await start(stack, prompt("A draft nobody likes"), tenant=tenant, draft_first=True)
        await wait_for_status(stack, started.view.id, GenerationStatus.AWAITING_APPROVAL)
        await control.decide_approval(stack.client, started.view.id, approved=False)
        assert (await finished(stack, started.view.id)).status is GenerationStatus.CANCELLED
        return started.view.id

    # Of a tenant the API knows (`demo`), to be read through GET /v1/generations/{id}.
    running = await start(stack, prompt("Still going", "#gen=100000"), **SHAPE)
    ids, _, _, rejected_id = await asyncio.gather(
        asyncio.gather(*(delivered() for _ in range(DELIVERED))), policy(), cancelled(), rejected()
    )

    async def indexed() -> bool:
        found = await control.read_generations(stack.client, tenant=tenant)
        return len(found.rows) == DELIVERED + 3 and all(r.latency_ms is not None for r in found.rows)

    await assert_eventually(indexed, within=20, what="the ended generations in visibility")
    try:
        yield OpsRun(tenant=tenant, delivered=list(ids), rejected=rejected_id, running=running.view.id)
    finally:
        await control.cancel_generation(stack.client, running.view.id)


def ops_headers(stack: Testbed) -> dict[str, str]:
    assert stack.settings.ops_api_key
    return {"Authorization": f"Bearer {stack.settings.ops_api_key.get_secret_value()}"}


async def get(stack: Testbed, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.api_url, verify=stack.tls.ssl_context(), timeout=30) as http:
        return await http.get(path, headers=headers or {})


async def test_the_ops_page_needs_the_ops_key(stack: Testbed) -> None:
    anonymous = await get(stack, "/ops")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")  # a browser asks for it
    tenant_key = await get(stack, "/ops", {"Authorization": "Bearer demo-secret"})
    assert tenant_key.status_code == 401
    assert stack.settings.ops_api_key
    basic = base64.b64encode(b"ops:" + stack.settings.ops_api_key.get_secret_value().encode()).decode()
    assert (await get(stack, "/ops?window=1h", {"Authorization": f"Basic {basic}"})).status_code == 200


async def test_a_bad_window_is_refused_naming_the_field(stack: Testbed) -> None:
    answer = await get(stack, "/ops?window=2w", ops_headers(stack))
    assert answer.status_code == 422
    assert answer.json()["error"]["fields"] == [{"field": "window", "message": "must be one of 1h, 24h, 7d"}]


async def test_the_ops_page_shows_figures_charts_and_what_is_in_flight(
    stack: Testbed, ops_run: OpsRun
) -> None:
    answer = await get(stack, "/ops?window=1h", ops_headers(stack))
    assert answer.status_code == 200, answer.text
    assert "script-src" not in answer.headers["content-security-policy"]  # default-src 'none'
    page = answer.text
    assert "<script" not in page and "http" not in page.replace(stack.settings.temporal_ui_url, "")
    # The running generation, linked to its page in the Temporal Web UI.
    assert f'href="{stack.settings.workflow_ui_url(ops_run.running)}"' in page
    assert re.search(r'<tr class="total"><td>ALL</td><td>ALL</td><td>(\d+)</td>', page)
    assert 'data-category="policy"' in page


async def test_the_ops_page_in_a_browser_has_charts_with_data(stack: Testbed, ops_run: OpsRun) -> None:
    from playwright.async_api import async_playwright

    assert CHROMIUM.exists(), "Chromium is missing: `make chromium` installs it"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            context = await browser.new_context(
                ignore_https_errors=True,  # the dev CA; trust is the API tests' subject, not this one
                extra_http_headers=ops_headers(stack),
                viewport={"width": 1400, "height": 1000},
            )
            page = await context.new_page()
            answer = await page.goto(f"{stack.api_url}/ops?window=1h")
            assert answer is not None and answer.status == 200
            latency = await page.eval_on_selector_all(
                "#latency-chart rect.bar", "bars => bars.map(b => [+b.dataset.count, b.getBBox().height])"
            )
            failures = await page.eval_on_selector_all(
                "#failures-chart rect.bar", "bars => bars.map(b => [b.dataset.category, b.getBBox().height])"
            )
            in_flight = await page.locator("#in-flight a", has_text=ops_run.running).count()
            SCREENSHOT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            await browser.close()
    print(f"ops page screenshot: {SCREENSHOT}")
    # Drawn, not only present: bars with a count have a height on screen.
    assert sum(count for count, _ in latency) >= DELIVERED
    assert all(height > 0 for count, height in latency if count)
    assert any(category == "policy" and height > 0 for category, height in failures)
    assert in_flight == 1


@pytest.fixture
def starter_env(stack: Testbed, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in settings_env(stack.settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await starter.run(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("starter_env")
async def test_report_counts_cancelled_and_rejected_apart_per_model_as_csv(
    ops_run: OpsRun, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await report(capsys, "--tenant", ops_run.tenant, "--since", "1h", "--csv")
    assert code == 0 and err == ""
    lines = {(r["scenario"], r["model"]): r for r in csv.DictReader(io.StringIO(out))}
    total = lines.pop(("ALL", "ALL"))
    assert (total["delivered"], total["failed"], total["cancelled"], total["rejected"]) == (
        "5",
        "1",
        "1",
        "1",
    )
    assert float(total["success_rate"]) == pytest.approx(5 / 6)  # cancels and rejections apart
    assert {model for _, model in lines} == {"seedance-1.5-pro"}


@pytest.mark.usefixtures("starter_env")
async def test_report_since_leaves_out_what_ended_before(
    ops_run: OpsRun, capsys: pytest.CaptureFixture[str]
) -> None:
    future = (datetime.now().astimezone() + timedelta(minutes=5)).isoformat()
    code, out, _ = await report(capsys, "--tenant", ops_run.tenant, "--since", future, "--json")
    assert code == 0 and out.strip() == "[]"
    code, _, err = await report(capsys, "--since", "soon")
    assert code == 2 and "--since" in err


@pytest.mark.usefixtures("starter_env")
async def test_report_says_when_it_hit_the_visibility_limit(
    ops_run: OpsRun, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await report(capsys, "--tenant", ops_run.tenant, "--limit", "3")
    assert code == 0 and "visibility limit (3 generations" in err
    [header, *rows] = out.splitlines()
    assert header.split()[:7] == ["scenario", "model", "gens", "ok", "fail", "canc", "rej"]
    assert rows[-1].split()[2] == "3"  # ALL ALL 3: the figures are over what was read
    code, _, err = await report(capsys, "--tenant", ops_run.tenant, "--limit", str(DELIVERED + 3))
    assert code == 0 and err == ""


async def test_a_running_generation_expects_the_recent_p95_of_its_shape(
    stack: Testbed, ops_run: OpsRun
) -> None:
    found = await control.read_generations(stack.client, tenant=ops_run.tenant)
    latencies = [r.latency_ms / 1000 for r in found.rows if r.id in ops_run.delivered and r.latency_ms]
    p95 = percentile(latencies, 95)  # no other test delivers this shape
    assert p95 is not None and len(latencies) == DELIVERED
    view = (
        await get(stack, f"/v1/generations/{ops_run.running}", {"Authorization": "Bearer demo-secret"})
    ).json()
    assert view["status"] in ("queued", "processing")
    expected = datetime.fromisoformat(view["created_at"]) + timedelta(seconds=p95)
    assert abs((datetime.fromisoformat(view["expected_ready_at"]) - expected).total_seconds()) < 0.01
    # It started before the five and runs on after them: past every one's latency, so past p95.
    assert view["stage"].startswith(f"{TAKING_LONGER}: ")


async def test_a_rejected_draft_recorded_before_the_flag_replays(stack: Testbed, ops_run: OpsRun) -> None:
    """VideoDraftRejected joins the final upsert rather than adding a command: a rejection
    recorded by the previous release (no such attribute) replays against today's code."""
    history = await stack.client.get_workflow_handle(ops_run.rejected).fetch_history()
    found = 0
    for event in history.events:
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        if sa.DRAFT_REJECTED.name in fields:
            del fields[sa.DRAFT_REJECTED.name]
            found += 1
    assert found == 1
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
