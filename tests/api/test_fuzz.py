"""Schemathesis against the published `/openapi.json`, over real HTTPS, with real Temporal and
the real workflow behind it: no input, valid or not, gets a 5xx or an answer the schema does
not describe (status, content type, body, headers)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.config import ApiConfig
from devstack.tls import TLSFiles
from tests.helpers import assert_eventually
from tests.helpers.api import (
    CALLBACK_SECRET,
    ServerThread,
    api_serving,
    auth,
    stand_in_worker,
)
from tests.helpers.fake_provider import FakeProvider
from workflows.callback_token import mint_callback_token
from workflows.generation import VideoGenerationWorkflow
from workflows.ids import generation_workflow_id

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Fuzzing is not a load test: the rate limit stays out of the way. Nor a test of uvicorn: h11
# refuses a request head larger than `max_header_bytes` with a text/plain 400 of its own, but
# only when the head arrives in more than one read (timing), and negative cases make query
# strings of many kilobytes (a 4097-character page_token of multi-byte characters is ~24 KB
# percent-encoded); room for them keeps every answer the app's.
ROOMY = ApiConfig(rate_limit_per_second=10_000, rate_limit_burst=10_000, max_header_bytes=1024 * 1024)


@pytest.fixture(scope="module")
async def fuzz_queue(temporal_env: WorkflowEnvironment) -> AsyncIterator[str]:
    async with stand_in_worker(temporal_env.client, FakeProvider(), "api-fuzz") as task_queue:
        yield task_queue


@pytest.fixture(scope="module")
def fuzz_api(temporal_env: WorkflowEnvironment, fuzz_queue: str, dev_tls: TLSFiles) -> Iterator[ServerThread]:
    with api_serving(temporal_env.client, fuzz_queue, dev_tls, ROOMY) as server:
        yield server


def fuzz(base_url: str, ca_file: str) -> dict[str, Any]:
    """Runs every operation in both generation modes; returns counts per operation."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", verify=ca_file)
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # a schema schemathesis cannot read is a failure of its own
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,  # the same inputs on every run: a failure here is reproducible
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                # Every case carries a valid key; negative cases still break everything else.
                case.call_and_validate(headers=auth("demo"), checks=CHECKS, verify=ca_file, timeout=30)
                calls[case.operation.label] = calls.get(case.operation.label, 0) + 1

            try:
                check()
            except Unsatisfiable:
                # Nothing to negate (no parameters, no body): the positive run covered it.
                if mode is schemathesis.GenerationMode.POSITIVE:
                    raise
    return calls


async def test_fuzzing_the_openapi_schema_finds_no_5xx_and_no_schema_violation(
    fuzz_api: ServerThread, dev_tls: TLSFiles
) -> None:
    started = time.monotonic()
    # In a thread: the workflow worker runs on this test's event loop and must keep serving
    # queries while schemathesis makes its blocking calls.
    calls = await asyncio.to_thread(fuzz, fuzz_api.base_url, str(dev_tls.ca))
    assert {
        "POST /v1/generations",
        "GET /v1/generations",
        "GET /v1/generations/{generation_id}",
        "POST /v1/generations/{generation_id}/cancel",
        "POST /v1/generations/{generation_id}/approve",
        "POST /v1/generations/{generation_id}/reject",
        "POST /callbacks/gptimage2/{token}",
        "GET /readyz",
    } <= set(calls)
    print(f"fuzzed {sum(calls.values())} requests in {time.monotonic() - started:.1f} s: {calls}")


# ---- hostile shapes, on every route -----------------------------------------------------------

JSON = "application/json"
DEEP = 20_000  # far past the JSON parser's recursion limit, still under the body limit
HOLE = b'"@@hole@@"'


@dataclass(frozen=True)
class Hostile:
    name: str
    content_type: str | None
    body: bytes


def _filled(base: dict[str, Any], field: str, raw: bytes) -> bytes:
    """`base` as JSON with `field`'s value (or, for a list, its one item) replaced by `raw`
    (JSON text, or not)."""
    hole: Any = ["@@hole@@"] if isinstance(base.get(field), list) else "@@hole@@"
    return json.dumps({**base, field: hole}).encode().replace(HOLE, raw)


def structural_shapes(base: dict[str, Any], number: str) -> list[Hostile]:
    """What is wrong with the body as a whole, or with one of its numbers (`number`)."""
    valid = json.dumps(base).encode()
    numbers = {
        f"nested {DEEP} deep": b"[" * DEEP + b"]" * DEEP,
        "nested 100 deep": b"[" * 100 + b"1" + b"]" * 100,
        "objects nested 5000 deep": b'{"a":' * 5000 + b"1" + b"}" * 5000,
        "5000-digit integer": b"9" * 5000,
        "negative 5000-digit integer": b"-" + b"9" * 5000,
        "31-digit integer": b"1" + b"0" * 30,
        "1e999": b"1e999",
        "-1e999": b"-1e999",
        "5000-digit fraction": b"0." + b"1" * 5000,
        "NaN": b"NaN",
        "Infinity": b"Infinity",
        "-Infinity": b"-Infinity",
    }
    shapes = [Hostile(f"{number}: {name}", JSON, _filled(base, number, raw)) for name, raw in numbers.items()]
    shapes += [
        Hostile("duplicate keys", JSON, valid[:-1] + b", " + valid[1:]),
        Hostile("UTF-16 body", JSON, json.dumps(base).encode("utf-16")),
        Hostile("UTF-32 body", JSON, json.dumps(base).encode("utf-32")),
        Hostile("UTF-8 byte order mark", JSON, b"\xef\xbb\xbf" + valid),
        Hostile("empty body", JSON, b""),
        Hostile("null", JSON, b"null"),
        Hostile("array", JSON, b"[]"),
        Hostile("truncated", JSON, valid[:-1]),
        Hostile("trailing garbage", JSON, valid + b"x"),
        Hostile("two documents", JSON, valid + valid),
        Hostile("over the size limit", JSON, _filled(base, number, b"[" + b"1," * 60_000 + b"1]")),
    ]
    for content_type in (
        None,
        "",
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "application/json; charset=utf-16",
        "application/json; charset=latin-1",
    ):
        shapes.append(Hostile(f"Content-Type {content_type!r}", content_type, valid))
    return shapes


def text_shapes(base: dict[str, Any], text: str) -> list[Hostile]:
    """What is wrong with one free-text field (`text`)."""
    strings = {
        "invalid UTF-8": b'"a\xff\xfeb"',
        "overlong UTF-8": b'"a\xc0\xafb"',
        "UTF-8-encoded surrogate": b'"a\xed\xa0\x80b"',
        "raw NUL byte": b'"a\x00b"',
        "lone high surrogate": b'"a\\ud800b"',
        "lone low surrogate": b'"\\udfffb"',
        "NUL": b'"a\\u0000b"',
        "ESC": b'"a\\u001b[31mb"',
        "DEL": b'"a\\u007fb"',
        "C1 NEL": b'"a\\u0085b"',
        "C1 CSI": b'"a\\u009bb"',
        "byte order mark": b'"\\ufeffab"',
        "RLO": b'"a\\u202eb"',
        "LRE": b'"a\\u202ab"',
        "LRI": b'"a\\u2066b"',
        "PDI": b'"a\\u2069b"',
        "NUL, BOM and BiDi": b'"\\u0000\\ufeffa lighthouse \\u202ereverse\\u202c"',
        "60000 characters": b'"' + b"x" * 60_000 + b'"',
    }
    return [Hostile(f"{text}: {name}", JSON, _filled(base, text, raw)) for name, raw in strings.items()]


# Values that must be refused in place of a path or query parameter (percent-encoded).
HOSTILE_VALUES = {
    "NUL": "a%00b",
    "invalid UTF-8": "a%FF%FEb",
    "overlong UTF-8": "a%C0%AFb",
    "RLO": "a%E2%80%AEb",
    "byte order mark": "%EF%BB%BFab",
    "C1 NEL": "a%C2%85b",
    "5000 characters": "x" * 5000,
    "5000 digits": "9" * 5000,
    "NaN": "NaN",
    "1e999": "1e999",
    "negative": "-1",
    "dot segments": "..%2F..%2Fadmin",
}
HARMLESS_USER_IDS = {"NaN", "1e999", "negative", "dot segments"}


@pytest.fixture(scope="module")
async def hostile_queue(temporal_env: WorkflowEnvironment) -> AsyncIterator[str]:
    async with stand_in_worker(temporal_env.client, FakeProvider(), "api-hostile") as task_queue:
        yield task_queue


@pytest.fixture(scope="module")
def hostile_api(
    temporal_env: WorkflowEnvironment, hostile_queue: str, dev_tls: TLSFiles
) -> Iterator[ServerThread]:
    with api_serving(temporal_env.client, hostile_queue, dev_tls, ROOMY) as server:
        yield server


def generation_body(**fields: Any) -> dict[str, Any]:
    return {"user_id": "hostile-user", "prompt": f"a lighthouse at dusk {uuid.uuid4().hex[:8]}", **fields}


async def workflow_ids(client: Client, task_queue: str) -> set[str]:
    return {w.id async for w in client.list_workflows(f'TaskQueue="{task_queue}"')}


async def test_hostile_input_on_every_route_gets_a_4xx_naming_the_problem_and_starts_nothing(
    hostile_api: ServerThread, hostile_queue: str, temporal_env: WorkflowEnvironment, dev_tls: TLSFiles
) -> None:
    temporal = temporal_env.client
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=hostile_api.base_url, verify=dev_tls.ssl_context(), timeout=30
    ) as http:

        def headers(content_type: str | None = None) -> dict[str, str]:
            extra = {} if content_type is None else {"Content-Type": content_type}
            return {**auth("demo"), "Idempotency-Key": uuid.uuid4().hex, **extra}

        # A running generation: hostile callbacks name it, so any that got through would signal it.
        target = await http.post("/v1/generations", json=generation_body(), headers=headers())
        assert target.status_code == 202, target.text
        target_id = target.json()["id"]
        token = mint_callback_token(CALLBACK_SECRET, target_id)
        unknown_id = generation_workflow_id("demo", "nobody", uuid.uuid4().hex)
        hint = {"id": "task-hostile", "status": "processing", "progress": 10}
        await assert_eventually(lambda: _has(temporal, hostile_queue, target_id), every=0.1)
        before = await workflow_ids(temporal, hostile_queue)

        spec = (await http.get("/openapi.json")).json()
        routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
        takes_body = {
            ("POST", "/v1/generations"): [
                *structural_shapes(generation_body(), "duration"),
                *text_shapes(generation_body(), "prompt"),
                *text_shapes(generation_body(), "user_id"),
                *text_shapes(generation_body(image_urls=["https://example.com/a.png"]), "image_urls"),
            ],
            ("POST", "/callbacks/gptimage2/{token}"): [
                *structural_shapes(hint, "progress"),
                *text_shapes(hint, "id"),
                *text_shapes(hint, "status"),
            ],
        }
        assert set(takes_body) <= routes
        failures: list[str] = []
        sent: dict[tuple[str, str], int] = {}

        async def send(route: tuple[str, str], url: str, *, refuse: bool, **kwargs: Any) -> None:
            what = f"{route[0]} {url[:80]} {kwargs.get('content', b'')[:60]!r}"
            sent[route] = sent.get(route, 0) + 1
            try:
                response = await http.request(route[0], url, **kwargs)
            except httpx.TransportError as exc:
                failures.append(f"{what}: no answer ({exc!r})")
                return
            if response.status_code >= 500 or (refuse and not 400 <= response.status_code < 500):
                failures.append(f"{what}: {response.status_code} {response.text[:200]}")
                return
            if refuse:
                error = response.json().get("error", {})
                # Malformed (400, 415, 422): the field or part at fault is named, too.
                named = error.get("fields") or response.status_code not in (400, 415, 422)
                if not error.get("type") or not error.get("message") or not named:
                    failures.append(
                        f"{what}: {response.status_code} without a problem named: {response.text[:200]}"
                    )

        paths = {"{generation_id}": unknown_id, "{token}": token}
        for route in sorted(routes):
            url = route[1]
            for name, value in paths.items():
                url = url.replace(name, value)
            shapes = takes_body.get(route) or structural_shapes(hint, "progress")
            for shape in shapes:
                await send(
                    route,
                    url,
                    refuse=route in takes_body,
                    content=shape.body,
                    headers=headers(shape.content_type),
                )
            # Hostile values wherever a path parameter or a query parameter goes.
            for name in paths:
                if name in route[1]:
                    for value in HOSTILE_VALUES.values():
                        await send(route, route[1].replace(name, value), refuse=True, headers=headers())
            for parameter in ("user_id", "status", "page_size", "page_token"):
                if route == ("GET", "/v1/generations"):
                    for name, value in HOSTILE_VALUES.items():
                        # Any text is a user id, as long as it is printable and not too long.
                        refuse = parameter != "user_id" or name not in HARMLESS_USER_IDS
                        await send(route, f"{route[1]}?{parameter}={value}", refuse=refuse, headers=headers())
        assert not failures, "\n".join(failures)
        assert set(sent) == routes

        # Nothing started: one more (valid) generation, and once it is visible, it is the only new one.
        barrier = await http.post("/v1/generations", json=generation_body(), headers=headers())
        assert barrier.status_code == 202, barrier.text
        await assert_eventually(lambda: _has(temporal, hostile_queue, barrier.json()["id"]), every=0.1)
        assert await workflow_ids(temporal, hostile_queue) - before == {barrier.json()["id"]}
        # And no hostile callback reached the generation it named.
        handle = temporal.get_workflow_handle_for(VideoGenerationWorkflow.run, target_id)
        assert (await handle.query(VideoGenerationWorkflow.view)).callbacks_received == 0
    print(f"sent {sum(sent.values())} hostile requests in {time.monotonic() - started:.1f} s")


async def _has(client: Client, task_queue: str, workflow_id: str) -> bool:
    return workflow_id in await workflow_ids(client, task_queue)
