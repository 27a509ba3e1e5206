"""deploy/prometheus and deploy/grafana: promtool checks the config, the rules and every
dashboard query, runs the rules' unit tests, and evaluates every recording rule against what
the real worker and API exported during a run of generations (so rule names and metric names
cannot drift apart)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.routers.callbacks import CALLBACK_RESULTS
from api.service import CallbackOutcome
from devstack.ports import LOOPBACK, free_port
from devstack.promtool import promtool
from devstack.seaweed import SeaweedServer
from devstack.testbed import Testbed, converter_for_testbeds, running_testbed
from devstack.tls import TLSFiles
from tests.helpers.flow import FAST, finished, prompt, start, wait_for_status
from worker import worker_runtime
from workflows import metrics
from workflows import search_attributes as sa
from workflows.callback_token import mint_callback_token
from workflows.control import decide_approval, start_generation
from workflows.models import GenerationSpec, GenerationStatus, GenerationView, Scenario

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
DASHBOARDS = sorted((REPO_ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
# Grafana's variables, as a rule file can hold them.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# Series Prometheus makes itself, not scraped from us.
PROMETHEUS_SERIES = {"up"}
APPROVAL_WAIT_SECONDS = 1.0


# --------------------------------------------------------------------------------------------
# reading rules, dashboards and scrapes


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def records() -> list[str]:
    return [rule["record"] for rule in rules() if "record" in rule]


def panels(path: Path) -> list[dict[str, Any]]:
    """Every panel of a dashboard, those inside rows too."""
    found: list[dict[str, Any]] = []

    def walk(level: list[dict[str, Any]]) -> None:
        for panel in level:
            found.append(panel)
            walk(panel.get("panels", []))

    walk(json.loads(path.read_text())["panels"])
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) of every query of every panel."""
    return [
        (f"{path.name}: {panel.get('title')}", target["expr"])
        for path in DASHBOARDS
        for panel in panels(path)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def as_rule_expr(expr: str) -> str:
    """A dashboard query as a rule can hold it: Grafana's interval variables become durations,
    a template variable's matcher `=~"$var"` matches anything."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return re.sub(r'=~"\$\w+"', '=~".*"', expr)


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_OFFSET = re.compile(r"\boffset\s+\d+[smhdwy]")
_NAME = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def series_names(expr: str) -> set[str]:
    """The metric (or recorded) names a PromQL expression selects: what is left once strings,
    label matchers, groupings, ranges, offsets and function calls are taken out."""
    for pattern in (_STRINGS, _GROUPING, _MATCHERS, _RANGES, _OFFSET):
        expr = pattern.sub(" ", expr)
    return {name for name in _NAME.findall(expr) if name not in _KEYWORDS}


Sample = tuple[str, tuple[tuple[str, str], ...]]


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_scrape(text: str) -> dict[Sample, float]:
    """Samples of Prometheus text as Prometheus stores them (prometheus_client's parser would
    add `_total` to the SDK's counters, which have none)."""
    samples: dict[Sample, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or line.startswith("#"):
            continue
        name, labels, value = match.group(1), match.group(2) or "", float(match.group(3))
        if name.endswith("_created") or math.isnan(value):
            continue
        pairs = ((key, bytes(raw, "utf-8").decode("unicode_escape")) for key, raw in _LABEL.findall(labels))
        samples[(name, tuple(sorted(pairs)))] = value
    return samples


def series_selector(sample: Sample) -> str:
    name, labels = sample
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, value in labels)
    return (
        name
        + "{"
        + ", ".join(f'{key}="{value}"' for (key, _), value in zip(labels, escaped, strict=True))
        + "}"
    )


def run_promtool(*args: str | Path) -> str:
    result = subprocess.run(
        [str(promtool()), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --------------------------------------------------------------------------------------------
# promtool over the files alone


def test_config_and_rules_pass_promtool_check() -> None:
    out = run_promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in out


def test_rule_unit_tests_pass() -> None:
    # One promtool per file, side by side: each takes a second of CPU.
    runs = [
        subprocess.Popen(
            [str(promtool()), "test", "rules", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in sorted((PROMETHEUS / "tests").glob("*.yml"))
    ]
    assert len(runs) == 2
    for run in runs:
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0, out


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts - firing == set(), "alerts no unit test makes fire"
    assert alerts - silent == set(), "alerts no unit test keeps silent"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20 and len(DASHBOARDS) == 2
    wrapped = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": as_rule_expr(expr)}
                    for index, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump(wrapped))
    assert f"SUCCESS: {len(queries)} rules found" in run_promtool("check", "rules", path)


def test_series_names_reads_promql() -> None:
    expr = (
        'sum by (scenario, le) (rate(video_x_bucket{status="delivered", a=~"b|c"}[5m])) / ignoring(le) '
        "(rec:y:rate5m offset 1d > bool 0) and on() histogram_quantile(0.5, z) or vector(0)"
    )
    assert series_names(expr) == {"video_x_bucket", "rec:y:rate5m", "z"}


def test_every_callback_outcome_has_a_result() -> None:
    assert set(CALLBACK_RESULTS) == set(CallbackOutcome)
    assert set(CALLBACK_RESULTS.values()) == {
        "ok",
        "duplicate",
        "forged",
        "unknown_generation",
        "late",
        "error",
    }


def test_compose_runs_prometheus_and_grafana_on_these_files() -> None:
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # Prometheus scrapes every worker replica on the port the workers bind.
    worker_port = services["worker"]["environment"]["WORKER_METRICS_BIND"].rpartition(":")[2]
    assert jobs["reliable-video-worker"]["dns_sd_configs"][0] == {
        "names": ["worker"], "type": "A", "port": int(worker_port), "refresh_interval": "30s"
    }  # fmt: skip
    assert services["worker"]["expose"] == [worker_port]
    assert jobs["reliable-video-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    provider = yaml.safe_load(
        (REPO_ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text()
    )
    assert f"./deploy/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in grafana
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    datasource = yaml.safe_load(
        (REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {
        json.dumps(target["datasource"])
        for path in DASHBOARDS
        for panel in panels(path)
        for target in panel.get("targets", [])
    }
    assert uids == {json.dumps({"type": "prometheus", "uid": datasource["datasources"][0]["uid"]})}


# --------------------------------------------------------------------------------------------
# the real worker and API during a run


@dataclass
class Scrapes:
    before: dict[Sample, float]
    after: dict[Sample, float]
    text: str  # the raw text after, worker and API
    views: dict[str, GenerationView]
    approval_latency_ms: int
    approval_total_ms: int


@pytest.fixture(scope="module")
async def metered(
    temporal_env: WorkflowEnvironment, sim: Any, s3: SeaweedServer, dev_tls: TLSFiles
) -> AsyncIterator[tuple[Testbed, str]]:
    """A testbed whose worker exports metrics as `python worker.py` does (worker_runtime), on
    the session's servers."""
    bind = f"{LOOPBACK}:{free_port()}"
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        runtime=worker_runtime(bind),
        data_converter=converter_for_testbeds(),
    )
    async with running_testbed(client, sim, s3, dev_tls) as testbed:
        yield testbed, f"http://{bind}/metrics"


async def scrape(testbed: Testbed, worker_url: str) -> str:
    async with httpx.AsyncClient(verify=testbed.tls.ssl_context(), timeout=10) as http:
        worker = await http.get(worker_url)
        api = await http.get(f"{testbed.api_url}/metrics")
    assert worker.status_code == api.status_code == 200
    return worker.text + "\n" + api.text


@pytest.fixture(scope="module")
async def scrapes(metered: tuple[Testbed, str]) -> Scrapes:
    testbed, worker_url = metered
    before = await scrape(testbed, worker_url)

    async def approved_after_a_wait() -> tuple[GenerationView, int]:
        started = await start(
            testbed, prompt("A storyboard frame", "#gen=1"), scenario=Scenario.STORYBOARD, draft_first=True
        )
        await wait_for_status(testbed, started.view.id, GenerationStatus.AWAITING_APPROVAL)
        # A task this generation never created calls back on its URL: an orphan, recorded.
        token = mint_callback_token(testbed.settings.callback_secret.get_secret_value(), started.view.id)
        async with httpx.AsyncClient(base_url=testbed.api_url, verify=testbed.tls.ssl_context()) as http:
            orphan = await http.post(
                f"/callbacks/gptimage2/{token}",
                json={"id": f"task-orphan-{uuid.uuid4().hex}", "status": "processing"},
            )
        assert orphan.status_code == 200
        # The user looks at the draft for a while: that time is not generation latency.
        await asyncio.sleep(APPROVAL_WAIT_SECONDS)
        await decide_approval(testbed.client, started.view.id, approved=True)
        view = await finished(testbed, started.view.id)
        handle = testbed.client.get_workflow_handle(started.view.id)
        latency_ms = (await handle.describe()).typed_search_attributes.get(sa.LATENCY_MS)
        assert latency_ms is not None
        return view, latency_ms

    async def ended(text: str, **spec: Any) -> GenerationView:
        return await finished(testbed, (await start(testbed, text, **spec)).view.id)

    async def without_tenant_label() -> GenerationView:
        started = await start_generation(
            testbed.client,
            tenant="acme",
            idempotency_key=uuid.uuid4().hex,
            spec=GenerationSpec.model_validate(
                {"user_id": "user-1", "prompt": prompt("A quiet harbour", "#gen=1", "#lost-response")}
            ),
            task_queue=testbed.task_queue,
            tuning=FAST,
            metrics_tenant_label=False,
        )
        return await finished(testbed, started.view.id)

    (draft_first, latency_ms), *ends = await asyncio.gather(
        approved_after_a_wait(),
        ended(prompt("A product turning", "#gen=1", "#fail=service_errorx1"), scenario=Scenario.PRODUCT_DEMO),
        ended(prompt("A scene", "#policy"), scenario=Scenario.AMBIENT),
        ended(prompt("Rain on a window", "#gen=1", "#nocallback"), scenario=Scenario.TALKING_HEAD),
        without_tenant_label(),
    )
    async with httpx.AsyncClient(base_url=testbed.api_url, verify=testbed.tls.ssl_context()) as http:
        forged = await http.post(
            "/callbacks/gptimage2/forged.0123456789abcdef0123456789abcdef", json={"id": "t"}
        )
    assert forged.status_code == 401
    after = await scrape(testbed, worker_url)
    views = dict(
        zip(["draft_first", "retried", "policy", "polled", "acme"], [draft_first, *ends], strict=True)
    )
    assert draft_first.updated_at and draft_first.created_at
    total_ms = int((draft_first.updated_at - draft_first.created_at).total_seconds() * 1000)
    return Scrapes(parse_scrape(before), parse_scrape(after), after, views, latency_ms, total_ms)


def grew(scrapes: Scrapes, name: str, **labels: str) -> float:
    """How much the samples named `name` whose labels include `labels` grew during the run."""

    def total(samples: dict[Sample, float]) -> float:
        return sum(
            value
            for (sample, sample_labels), value in samples.items()
            if sample == name and labels.items() <= dict(sample_labels).items()
        )

    return total(scrapes.after) - total(scrapes.before)


def test_the_run_ended_as_planned(scrapes: Scrapes) -> None:
    statuses = {name: view.status for name, view in scrapes.views.items()}
    assert statuses == {
        "draft_first": GenerationStatus.DELIVERED,
        "retried": GenerationStatus.DELIVERED,
        "policy": GenerationStatus.FAILED,
        "polled": GenerationStatus.DELIVERED,
        "acme": GenerationStatus.DELIVERED,
    }
    assert scrapes.views["retried"].attempts == 2 and scrapes.views["polled"].polls >= 1


def test_generations_are_counted_by_outcome(scrapes: Scrapes) -> None:
    assert grew(scrapes, metrics.GENERATIONS) == 5
    assert grew(scrapes, metrics.GENERATIONS, scenario="ambient", status="failed", category="policy") == 1
    assert (
        grew(scrapes, metrics.GENERATIONS, scenario="product_demo", status="delivered", category="none") == 1
    )
    assert grew(scrapes, metrics.GENERATIONS, tenant="demo") == 4
    # METRICS_TENANT_LABEL off for acme's generation: recorded without its tenant.
    assert grew(scrapes, metrics.GENERATIONS, tenant=metrics.NO_TENANT) == 1
    assert grew(scrapes, metrics.GENERATIONS, tenant="acme") == 0
    assert grew(scrapes, metrics.PROVIDER_TASKS) == 7  # draft and final, a failed task and its retry, 3 more
    assert grew(scrapes, metrics.RETRIES, scenario="product_demo") == 1


def test_latency_is_in_seconds_with_buckets_up_to_two_hours(scrapes: Scrapes) -> None:
    buckets = {
        float(dict(labels)["le"])
        for (name, labels) in scrapes.after
        if name == metrics.LATENCY + "_bucket" and dict(labels)["le"] != "+Inf"
    }
    assert buckets == set(metrics.LATENCY_BUCKETS) and min(buckets) == 1 and max(buckets) == 7200
    assert grew(scrapes, metrics.LATENCY + "_count", phase="draft", scenario="storyboard") == 1
    assert grew(scrapes, metrics.LATENCY + "_count", phase="final", status="delivered") == 4
    assert 0 < grew(scrapes, metrics.LATENCY + "_sum", phase="final") < 60  # seconds, not ms


def test_latency_leaves_out_the_wait_for_approval(scrapes: Scrapes) -> None:
    wait_ms = APPROVAL_WAIT_SECONDS * 1000
    assert scrapes.approval_total_ms > wait_ms
    assert 0 < scrapes.approval_latency_ms <= scrapes.approval_total_ms - wait_ms  # LatencyMs
    final_seconds = grew(scrapes, metrics.LATENCY + "_sum", phase="final", scenario="storyboard")
    assert 0 < final_seconds <= (scrapes.approval_total_ms - wait_ms) / 1000


def test_credits_tasks_and_rehosts_are_measured(scrapes: Scrapes) -> None:
    charged = grew(scrapes, metrics.CREDITS + "_sum", kind="charged")
    assert charged == pytest.approx(sum(view.credits for view in scrapes.views.values()))
    assert grew(scrapes, metrics.CREDITS + "_sum", kind="reserved") >= charged > 0
    assert (
        grew(scrapes, metrics.CREDITS + "_sum", kind="refunded", scenario="ambient") > 0
    )  # the policy failure
    # The task whose create response was lost is known from its callback, not created here.
    assert grew(scrapes, metrics.TASKS_CREATED, callbacks="enabled") == 6
    assert grew(scrapes, metrics.ORPHANS, outcome="recorded", scenario="storyboard") == 1
    assert grew(scrapes, metrics.ORPHANS, outcome="adopted") == 1
    assert grew(scrapes, metrics.TASKS_FINALISED, via="poll") >= 1  # the task that never called back
    assert grew(scrapes, metrics.TASKS_FINALISED, via="callback") >= 1
    delivered_bytes = sum(
        o.size_bytes
        for v in scrapes.views.values()
        for o in [*v.outputs, *(v.draft.outputs if v.draft else [])]
    )
    assert grew(scrapes, metrics.REHOST_BYTES) == delivered_bytes > 0
    assert grew(scrapes, metrics.REHOST_SECONDS + "_count") == 5


def test_api_counts_callbacks_by_result(scrapes: Scrapes) -> None:
    assert grew(scrapes, "api_callback_results_total", result="forged") == 1
    assert grew(scrapes, "api_callback_results_total", result="ok") >= 1


def test_no_ids_or_prompt_text_in_labels(scrapes: Scrapes) -> None:
    for view in scrapes.views.values():
        for value in (view.id, *view.provider_task_ids, view.params.prompt if view.params else ""):
            assert value and value not in scrapes.text
    for name, labels in scrapes.after:
        if name.startswith("video_"):
            assert {key for key, _ in labels} <= {
                "tenant", "scenario", "model", "status", "category", "phase", "kind", "outcome", "via",
                "callbacks", "le", "namespace", "task_queue", "workflow_type", "activity_type", "service_name",
            }, name  # fmt: skip


def test_every_series_the_rules_and_dashboards_read_is_exported(scrapes: Scrapes) -> None:
    exported = {name for name, _ in scrapes.after} | set(records()) | PROMETHEUS_SERIES
    exprs = [(rule.get("record") or rule["alert"], rule["expr"]) for rule in rules()] + dashboard_queries()
    missing = {where: sorted(series_names(expr) - exported) for where, expr in exprs}
    assert {where: names for where, names in missing.items() if names} == {}


def test_every_recording_rule_has_data_on_a_real_scrape(scrapes: Scrapes, tmp_path: Path) -> None:
    """promtool evaluates the rules over the scraped samples: the values before the run until
    minute 7, after it from minute 8 (so 5-minute rates see the run at minute 10)."""
    series = [
        {"series": series_selector(sample), "values": f"{scrapes.before.get(sample, 0.0)!r}x7 {value!r}x12"}
        for sample, value in scrapes.after.items()
    ]
    names = records()
    unit = {
        "rule_files": [str(path) for path in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    # `r == r` drops NaN: a rule that divides by nothing has no data either.
                    {
                        "expr": f"count({name} == {name}) > bool 0",
                        "eval_time": "10m",
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    }
                    for name in names
                ],
            }
        ],
    }
    path = tmp_path / "scraped_test.yml"
    path.write_text(yaml.safe_dump(unit))
    run_promtool("test", "rules", path)
    assert len(names) >= 20
