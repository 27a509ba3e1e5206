"""Schemathesis against the published `/openapi.json`, over real HTTPS, with real Temporal and
the real workflow behind it: no input, valid or not, gets a 5xx or an answer the schema does
not describe (status, content type, body, headers)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

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
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from api.config import ApiConfig
from devstack.tls import TLSFiles
from tests.api_fixtures import FakeProvider, ServerThread, api_settings, auth, serving, temporal_address
from workflows.generation import VideoGenerationWorkflow

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Fuzzing is not a load test: the rate limit stays out of the way.
ROOMY = ApiConfig(rate_limit_per_second=10_000, rate_limit_burst=10_000)


@pytest.fixture(scope="module")
async def fuzz_queue(temporal_env: WorkflowEnvironment) -> AsyncIterator[str]:
    task_queue = f"api-fuzz-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_env.client,
        task_queue=task_queue,
        workflows=[VideoGenerationWorkflow],
        activities=FakeProvider().activities(),
    ):
        yield task_queue


@pytest.fixture(scope="module")
def fuzz_api(temporal_env: WorkflowEnvironment, fuzz_queue: str, dev_tls: TLSFiles) -> Iterator[ServerThread]:
    settings = api_settings(temporal_address(temporal_env.client), fuzz_queue, dev_tls)
    with serving(create_app(settings, config=ROOMY), tls=dev_tls, config=ROOMY) as server:
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
