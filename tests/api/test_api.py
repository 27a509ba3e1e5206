"""The HTTP API over real HTTPS (uvicorn, as `python -m api` serves it) against the real Temporal
dev server and the real VideoGenerationWorkflow; only the provider is a stand-in, at the
activity boundary, so each test decides when a provider task ends."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.config import ApiConfig
from api.jsonbody import BodyRefused, media_type_problem, parse_json_object
from api.redact import REDACTED, redact, redact_body
from api.service import Recent
from api.text import json_schema_pattern, text_problem
from devstack.ports import free_port
from devstack.tls import TLSFiles
from tests.helpers.api import (
    CALLBACK_SECRET,
    TENANT_KEYS,
    FakeDns,
    FakeProvider,
    ImageServer,
    ServerThread,
    api_settings,
    auth,
    serving,
    stand_in_worker,
    temporal_address,
    wait_for,
)
from workflows.callback_token import mint_callback_token
from workflows.generation import VideoGenerationWorkflow
from workflows.ids import generation_workflow_id
from workflows.models import GenerationView

GENERATION_FIELDS = {
    "id", "status", "stage", "progress", "mode", "failure_category", "failure_message", "guidance",
    "outputs", "credits", "attempts", "provider_task_ids", "created_at", "updated_at",
}  # fmt: skip
ROOMY = ApiConfig(rate_limit_per_second=10_000, rate_limit_burst=10_000)


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def provider_queue(temporal_env: WorkflowEnvironment) -> AsyncIterator[tuple[FakeProvider, str]]:
    provider = FakeProvider()
    async with stand_in_worker(temporal_env.client, provider, "api-tests") as task_queue:
        yield provider, task_queue


@pytest.fixture(scope="module")
def provider(provider_queue: tuple[FakeProvider, str]) -> FakeProvider:
    return provider_queue[0]


@pytest.fixture(scope="module")
def images(dev_tls: TLSFiles) -> Iterator[ImageServer]:
    with ImageServer(dev_tls) as server:
        yield server


@pytest.fixture(scope="module")
def dns() -> FakeDns:
    return FakeDns(
        {
            "rebind.ssrf-test.example": ["127.0.0.1"],
            "mixed.ssrf-test.example": ["93.184.216.34", "10.0.0.7"],
            "mapped.ssrf-test.example": ["::ffff:169.254.169.254"],
        }
    )


@pytest.fixture(scope="module")
def api(
    temporal_env: WorkflowEnvironment,
    provider_queue: tuple[FakeProvider, str],
    dev_tls: TLSFiles,
    dns: FakeDns,
) -> Iterator[ServerThread]:
    settings = api_settings(temporal_address(temporal_env.client), provider_queue[1], dev_tls)
    with serving(create_app(settings, config=ROOMY, resolver=dns), tls=dev_tls, config=ROOMY) as server:
        yield server


@pytest.fixture
async def http(api: ServerThread, dev_tls: TLSFiles) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.base_url, verify=dev_tls.ssl_context(), timeout=30) as client:
        yield client


@pytest.fixture
def temporal(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


# ---- helpers ---------------------------------------------------------------------------------


def body(**fields: Any) -> dict[str, Any]:
    return {"user_id": "user-1", "prompt": f"a lighthouse at dusk {uuid.uuid4().hex[:8]}", **fields}


async def create(
    http: httpx.AsyncClient, payload: dict[str, Any], *, key: str | None = None, tenant: str = "demo"
) -> httpx.Response:
    headers = {**auth(tenant), "Idempotency-Key": key or uuid.uuid4().hex}
    return await http.post("/v1/generations", json=payload, headers=headers)


ApiWith = Callable[[ApiConfig], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def api_with(
    temporal_env: WorkflowEnvironment,
    provider_queue: tuple[FakeProvider, str],
    dev_tls: TLSFiles,
    dns: FakeDns,
) -> ApiWith:
    """A second API, beside the module's, on the same Temporal and task queue, with its own knobs."""

    @asynccontextmanager
    async def serve(config: ApiConfig) -> AsyncIterator[httpx.AsyncClient]:
        settings = api_settings(temporal_address(temporal_env.client), provider_queue[1], dev_tls)
        app = create_app(settings, config=config, resolver=dns)
        with serving(app, tls=dev_tls, config=config) as server:
            async with httpx.AsyncClient(base_url=server.base_url, verify=dev_tls.ssl_context()) as client:
                yield client

    return serve


async def started(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await create(http, body(**fields))
    assert response.status_code == 202, response.text
    generation: dict[str, Any] = response.json()
    return generation


async def query_view(temporal: Client, workflow_id: str) -> GenerationView:
    handle = temporal.get_workflow_handle_for(VideoGenerationWorkflow.run, workflow_id)
    return await handle.query(VideoGenerationWorkflow.view)


async def assert_never_started(http: httpx.AsyncClient, tenant: str, user_id: str, key: str) -> None:
    workflow_id = generation_workflow_id(tenant, user_id, key)
    response = await http.get(f"/v1/generations/{workflow_id}", headers=auth(tenant))
    assert response.status_code == 404, response.text


def field_names(response: httpx.Response) -> set[str]:
    return {f["field"] for f in response.json()["error"]["fields"]}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


# ---- health ----------------------------------------------------------------------------------


async def test_health_and_readiness_with_temporal_up(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ready"}


async def test_app_starts_without_temporal_and_answers_503(dev_tls: TLSFiles) -> None:
    dead = f"127.0.0.1:{free_port()}"
    settings = api_settings(dead, "nowhere", dev_tls)
    config = ApiConfig(temporal_connect_timeout_seconds=1)
    with serving(create_app(settings, config=config), tls=dev_tls, config=config) as server:
        async with httpx.AsyncClient(base_url=server.base_url, verify=dev_tls.ssl_context()) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["type"] == "service_unavailable"
            post = await create(http, body())
            assert post.status_code == 503 and post.headers["retry-after"] == "1"
            assert (await http.get("/v1/generations", headers=auth("demo"))).status_code == 503
            workflow_id = generation_workflow_id("demo", "user-1", "k")
            token = mint_callback_token(CALLBACK_SECRET, workflow_id)
            callback = await http.post(f"/callbacks/gptimage2/{token}", json={"id": "task-1"})
            # 503 makes the provider retry (1, 2, 4 s); polling covers whatever is still lost.
            assert callback.status_code == 503


# ---- authentication and idempotency ----------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Bearer {TENANT_KEYS['demo']}x"},
        {"Authorization": f"Bearer {TENANT_KEYS['demo'][:-1]}"},
        {"Authorization": f"Basic {TENANT_KEYS['demo']}"},
        {"Authorization": TENANT_KEYS["demo"]},
        {"Authorization": "Bearer"},
    ],
)
async def test_missing_or_invalid_key_is_401(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for response in (
        await http.get("/v1/generations", headers=headers),
        await http.get("/v1/generations/gen-demo-0", headers=headers),
        await http.post("/v1/generations", json=body(), headers={**headers, "Idempotency-Key": "k"}),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("key", [None, b"", b"x" * 256, "clé".encode(), b"a\tb"])
async def test_idempotency_key_is_required_400(http: httpx.AsyncClient, key: bytes | None) -> None:
    headers = {k.encode(): v.encode() for k, v in auth("demo").items()}
    if key is not None:
        headers[b"Idempotency-Key"] = key
    response = await http.post("/v1/generations", json=body(), headers=headers)
    assert response.status_code == 400, response.text
    assert field_names(response) == {"Idempotency-Key"}


async def test_first_post_is_202_and_the_repeat_is_200_with_the_same_generation(
    http: httpx.AsyncClient, provider: FakeProvider
) -> None:
    payload, key = body(duration=6, quality="480p", aspect_ratio="9:16", scenario="ambient"), "click-1"
    first = await create(http, payload, key=key)
    assert first.status_code == 202, first.text
    generation = first.json()
    assert GENERATION_FIELDS <= set(generation)
    assert generation["id"] == generation_workflow_id("demo", "user-1", key)
    assert (generation["mode"], generation["scenario"]) == ("text-to-video", "ambient")
    await provider.wait_for_task(generation["id"])
    again = await create(http, payload, key=key)
    assert again.status_code == 200
    assert again.json()["id"] == generation["id"]
    # Omitted fields are the contract's defaults, so spelling them out is the same request.
    explicit = await create(http, {**payload, "model": "seedance-1.5-pro", "generate_audio": True}, key=key)
    assert (explicit.status_code, explicit.json()["id"]) == (200, generation["id"])
    fetched = await http.get(f"/v1/generations/{generation['id']}", headers=auth("demo"))
    assert fetched.status_code == 200
    assert fetched.json()["status"] in ("queued", "processing")
    assert provider.creates[generation["id"]] == 1


async def test_same_key_different_body_is_409(http: httpx.AsyncClient) -> None:
    payload, key = body(), uuid.uuid4().hex
    assert (await create(http, payload, key=key)).status_code == 202
    conflict = await create(http, {**payload, "duration": 8}, key=key)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["type"] == "idempotency_conflict"
    assert "different request" in conflict.json()["error"]["message"]


async def test_same_key_from_another_user_or_tenant_is_another_generation(http: httpx.AsyncClient) -> None:
    key = uuid.uuid4().hex
    mine = await create(http, body(), key=key)
    other_user = await create(http, body(user_id="user-2"), key=key)
    other_tenant = await create(http, body(), key=key, tenant="acme")
    assert [r.status_code for r in (mine, other_user, other_tenant)] == [202, 202, 202]
    assert len({r.json()["id"] for r in (mine, other_user, other_tenant)}) == 3


async def test_concurrent_duplicate_posts_start_exactly_one_workflow(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    payload, key = body(), uuid.uuid4().hex
    responses = await asyncio.gather(*(create(http, payload, key=key) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [202]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    workflow_id = ids.pop()
    await provider.wait_for_task(workflow_id)
    assert provider.creates[workflow_id] == 1
    runs = [w async for w in temporal.list_workflows(f"WorkflowId = '{workflow_id}'")]
    assert len({w.run_id for w in runs}) <= 1


# ---- validation ------------------------------------------------------------------------------

INVALID_BODIES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("empty prompt", {"prompt": ""}, {"prompt"}),
    ("blank prompt", {"prompt": "   "}, {"prompt"}),
    ("prompt over 8000 chars", {"prompt": "x" * 8001}, {"prompt"}),
    ("prompt over 2000 words", {"prompt": "a " * 2001}, {"prompt"}),
    ("duration too short", {"duration": 3}, {"duration"}),
    ("duration too long", {"duration": 13}, {"duration"}),
    ("duration not an int", {"duration": 5.5}, {"duration"}),
    ("duration as float", {"duration": 5.0}, {"duration"}),
    ("duration as string", {"duration": "5"}, {"duration"}),
    ("duration as bool", {"duration": True}, {"duration"}),
    ("unknown quality", {"quality": "1080p"}, {"quality"}),
    ("unknown aspect ratio", {"aspect_ratio": "2:1"}, {"aspect_ratio"}),
    ("unknown model", {"model": "sora-2"}, {"model"}),
    ("unknown scenario", {"scenario": "documentary"}, {"scenario"}),
    ("three image urls", {"image_urls": ["https://a.example/1.png"] * 3}, {"image_urls"}),
    ("image url not https", {"image_urls": ["http://example.com/a.png"]}, {"image_urls[0]"}),
    ("image url not a string", {"image_urls": [42]}, {"image_urls[0]"}),
    ("audio not a bool", {"generate_audio": "yes"}, {"generate_audio"}),
    ("draft_first not a bool", {"draft_first": 1}, {"draft_first"}),
    ("empty user id", {"user_id": ""}, {"user_id"}),
    ("blank user id", {"user_id": "  "}, {"user_id"}),
    ("user id over 128", {"user_id": "u" * 129}, {"user_id"}),
    ("user id with control chars", {"user_id": "a\nb"}, {"user_id"}),
    ("user id with a BiDi override", {"user_id": "user\u202e1"}, {"user_id"}),
    (
        "prompt with NUL, BOM and BiDi controls",
        {"prompt": "a lighthouse \x00\ufeff\u202eat dusk"},
        {"prompt"},
    ),
    ("prompt with a C1 control", {"prompt": "a lighthouse\x85at dusk"}, {"prompt"}),
    ("prompt with an isolate", {"prompt": "a lighthouse \u2066at dusk\u2069"}, {"prompt"}),
    (
        "image url with a BiDi override",
        {"image_urls": ["https://example.com/\u202egnp.exe"]},
        {"image_urls[0]"},
    ),
    ("unknown field", {"durationn": 5}, {"durationn"}),
    (
        "every field bad at once",
        {
            "user_id": "",
            "prompt": "",
            "model": "x",
            "duration": 99,
            "quality": "4k",
            "aspect_ratio": "1:2",
            "generate_audio": "no",
            "image_urls": ["http://example.com/a.png", "https://10.0.0.1/b.png"],
            "scenario": "?",
            "draft_first": "no",
        },
        {
            "user_id",
            "prompt",
            "model",
            "duration",
            "quality",
            "aspect_ratio",
            "generate_audio",
            "image_urls[0]",
            "image_urls[1]",
            "scenario",
            "draft_first",
        },
    ),
]


@pytest.mark.parametrize(("case", "fields", "bad"), INVALID_BODIES, ids=[c[0] for c in INVALID_BODIES])
async def test_invalid_body_is_422_naming_each_bad_field_and_starts_nothing(
    http: httpx.AsyncClient, case: str, fields: dict[str, Any], bad: set[str]
) -> None:
    payload, key = body(**fields), uuid.uuid4().hex
    response = await create(http, payload, key=key)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert field_names(response) == bad
    assert all(f["message"] for f in error["fields"])
    user_id = (
        payload["user_id"] if isinstance(payload["user_id"], str) and payload["user_id"].strip() else "user-1"
    )
    await assert_never_started(http, "demo", user_id, key)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"a string"', b"\xff\xfe"])
async def test_body_that_is_not_a_json_object_is_422(http: httpx.AsyncClient, raw: bytes) -> None:
    headers = {**auth("demo"), "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
    response = await http.post("/v1/generations", content=raw, headers=headers)
    assert response.status_code == 422
    assert field_names(response) == {"body"}


async def test_multi_line_and_right_to_left_prompts_are_text(http: httpx.AsyncClient) -> None:
    # What the character rule keeps: line breaks and tabs in the prompt, direction marks,
    # right-to-left scripts, emoji with joiners.
    prompt = "scene 1:\ta lighthouse\r\nscene 2: \u05de\u05d2\u05d3\u05dc\u200f \u0645\u0646\u0627\u0631\u0629\u061c \U0001f468\u200d\U0001f469\u200d\U0001f467"
    generation = await started(http, prompt=prompt, user_id="\u05de\u05e9\u05ea\u05de\u05e9 \u00e9\u00e8")
    assert generation["user_id"] == "\u05de\u05e9\u05ea\u05de\u05e9 \u00e9\u00e8"


VALID_RAW = b'{"user_id": "user-1", "prompt": "a lighthouse at dusk"}'


@pytest.mark.parametrize(
    ("content_type", "raw", "status", "field", "says"),
    [
        ("text/plain", VALID_RAW, 415, "Content-Type", "application/json"),
        (None, VALID_RAW, 415, "Content-Type", "none was sent"),
        ("application/json; charset=utf-16", VALID_RAW, 415, "Content-Type", "UTF-8"),
        (
            "application/json",
            VALID_RAW[:-1] + b', "duration": ' + b"9" * 5000 + b"}",
            422,
            "duration",
            "64 bits",
        ),
        ("application/json", VALID_RAW[:-1] + b', "duration": 1e999}', 422, "duration", "out of range"),
        ("application/json", VALID_RAW[:-1] + b', "duration": NaN}', 422, "duration", "NaN"),
        ("application/json", VALID_RAW[:-1] + b', "prompt": "again"}', 422, "prompt", "more than once"),
        (
            "application/json",
            VALID_RAW[:-1] + b', "image_urls": ' + b"[" * 50 + b"]" * 50 + b"}",
            422,
            "image_urls" + "[0]" * 31,
            "32 levels",
        ),
        (
            "application/json",
            VALID_RAW[:-1] + b', "image_urls": ' + b"[" * 9000 + b"]" * 9000 + b"}",
            422,
            "body",
            "32 levels",
        ),
        ("application/json", VALID_RAW.replace(b"dusk", b"dusk\\ud800"), 422, "prompt", "lone surrogate"),
        ("application/json", VALID_RAW.replace(b"dusk", b"\xff"), 422, "body", "UTF-8"),
        ("application/json", b"\xef\xbb\xbf" + VALID_RAW, 422, "body", "byte order mark"),
        ("application/json", VALID_RAW.decode().encode("utf-16"), 422, "body", "UTF-8"),
    ],
)
async def test_a_body_that_is_not_plain_json_is_refused_naming_the_problem_and_starts_nothing(
    http: httpx.AsyncClient, content_type: str | None, raw: bytes, status: int, field: str, says: str
) -> None:
    key = uuid.uuid4().hex
    extra = {} if content_type is None else {"Content-Type": content_type}
    response = await http.post(
        "/v1/generations", content=raw, headers={**auth("demo"), "Idempotency-Key": key, **extra}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert field in field_names(response) and says in error["message"], error
    await assert_never_started(http, "demo", "user-1", key)


SSRF_URLS = [
    "http://2130706433/a.png",
    "https://2130706433/a.png",
    "https://0177.0.0.1/a.png",
    "https://0x7f.1/a.png",
    "https://127.1/a.png",
    "https://[::1]/a.png",
    "https://[::ffff:127.0.0.1]/a.png",
    "https://[::ffff:7f00:1]/a.png",
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://[fd00:ec2::254]/latest/meta-data/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://10.0.0.1/a.png",
    "https://172.16.5.4/a.png",
    "https://192.168.0.1/a.png",
    "https://100.64.0.1/a.png",
    "https://0.0.0.0/a.png",
    "https://[fe80::1]/a.png",
    "https://[fc00::1]/a.png",
    "https://localhost.localdomain/a.png",
    "https://127.0.0.1.localhost/a.png",
    "https://rebind.ssrf-test.example/a.png",  # DNS says 127.0.0.1
    "https://mixed.ssrf-test.example/a.png",  # one public answer, one private
    "https://mapped.ssrf-test.example/a.png",  # DNS says ::ffff:169.254.169.254
    "https://example.com@127.0.0.1/a.png",
    "https://[2002:a9fe:a9fe::1]/a.png",  # 6to4 of 169.254.169.254
    "https://[64:ff9b::a00:1]/a.png",  # NAT64 of 10.0.0.1
    "https://127.0.0.1:{port}/ok.png",  # a real image server, by address: refused
    "https://localhost:{port}/to?url=http://127.0.0.1:{port}/ok.png",
    "https://localhost:{port}/to?url=https://127.0.0.1:{port}/ok.png",
    "https://localhost:{port}/to?url=https://169.254.169.254/latest/meta-data/",
    "https://localhost:{port}/to?url=https://rebind.ssrf-test.example:{port}/ok.png",
]


@pytest.mark.parametrize("url", SSRF_URLS)
async def test_hostile_image_url_is_422_and_starts_nothing(
    http: httpx.AsyncClient, images: ImageServer, url: str
) -> None:
    key = uuid.uuid4().hex
    response = await create(http, body(image_urls=[url.format(port=images.port)]), key=key)
    assert response.status_code == 422, response.text
    assert field_names(response) == {"image_urls[0]"}
    await assert_never_started(http, "demo", "user-1", key)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/fake.png", "not a JPEG, PNG or WebP"),
        ("/huge.png", "limit is 10485760 bytes"),
        ("/huge-norange.png", "limit is 10485760 bytes"),
        ("/missing.png", "HTTP 404"),
        ("/hops/3", "redirects more than 3 times"),
    ],
)
async def test_image_that_the_provider_would_refuse_is_422(
    http: httpx.AsyncClient, images: ImageServer, path: str, message: str
) -> None:
    response = await create(http, body(image_urls=[images.url("/ok.png"), images.url(path)]))
    assert response.status_code == 422
    [problem] = response.json()["error"]["fields"]
    assert problem["field"] == "image_urls[1]"
    assert message in problem["message"]


async def test_good_images_from_an_allowed_host_start_image_to_video(
    http: httpx.AsyncClient, images: ImageServer
) -> None:
    one = await started(http, image_urls=[images.url("/ok.webp")])
    two = await started(http, image_urls=[images.url("/ok.png"), images.url("/hops/1")])
    assert (one["mode"], two["mode"]) == ("image-to-video", "first-last-frame")


# ---- tenants, cancel, approval ---------------------------------------------------------------


async def test_another_tenants_generation_is_404_like_an_unknown_one(http: httpx.AsyncClient) -> None:
    theirs = (await started(http))["id"]
    unknown = generation_workflow_id("demo", "nobody", uuid.uuid4().hex)
    for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/approve"), ("POST", "/reject")):
        cross = await http.request(method, f"/v1/generations/{theirs}{suffix}", headers=auth("acme"))
        missing = await http.request(method, f"/v1/generations/{unknown}{suffix}", headers=auth("acme"))
        assert cross.status_code == missing.status_code == 404
        assert cross.json()["error"]["type"] == missing.json()["error"]["type"] == "not_found"
        assert cross.json()["error"]["message"].replace(theirs, "ID") == missing.json()["error"][
            "message"
        ].replace(unknown, "ID")
    assert (await http.get(f"/v1/generations/{theirs}", headers=auth("demo"))).status_code == 200


async def test_approve_and_reject_are_409_when_nothing_awaits_approval(http: httpx.AsyncClient) -> None:
    generation = await started(http)
    for verb in ("approve", "reject"):
        response = await http.post(f"/v1/generations/{generation['id']}/{verb}", headers=auth("demo"))
        assert response.status_code == 409, response.text
        assert response.json()["error"]["type"] == "not_awaiting_approval"


async def test_cancel_works_while_running_and_returns_an_ended_one_unchanged(
    http: httpx.AsyncClient, provider: FakeProvider
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    cancelled = await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert provider.tasks[task_id].status == "cancelled"  # the provider task was cancelled too
    again = await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    assert again.status_code == 200
    assert again.json() == cancelled.json()


# ---- the provider callback -------------------------------------------------------------------


def callback_path(workflow_id: str, secret: str = CALLBACK_SECRET) -> str:
    return f"/callbacks/gptimage2/{mint_callback_token(secret, workflow_id)}"


async def test_valid_callback_signals_the_workflow(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    task = {"id": task_id, "status": "processing", "progress": 50, "extra": {"unknown": "fields are fine"}}
    response = await http.post(callback_path(generation["id"]), json=task)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    view = await query_view(temporal, generation["id"])
    assert view.callbacks_received == 1
    # Support reads it from the API: a generation that hears no callbacks only polls.
    fetched = (await http.get(f"/v1/generations/{generation['id']}", headers=auth("demo"))).json()
    assert (fetched["callbacks_received"], fetched["polls"]) == (1, view.polls)


async def test_a_repeated_callback_is_answered_without_a_second_signal(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    path = callback_path(generation["id"])
    duplicates_before = metric((await http.get("/metrics")).text, "api_callbacks_total", outcome="duplicate")
    # The same hint five times at once (a provider retrying while the first is in flight, or
    # duplicating it): one signal, every sender answered 2xx.
    hint = {"id": task_id, "status": "processing"}
    first = await asyncio.gather(*(http.post(path, json=hint) for _ in range(5)))
    assert [r.status_code for r in first] == [200] * 5
    assert {r.json()["status"] for r in first} <= {"accepted", "duplicate"}
    # Later repeats, with fields that do not matter changed, are answered from memory.
    later = await http.post(path, json={**hint, "progress": 70})
    assert later.status_code == 200 and later.json() == {"status": "duplicate"}
    # A new status of the same task is news, and so is another task.
    assert (await http.post(path, json={"id": task_id, "status": "completed"})).json() == {
        "status": "accepted"
    }
    assert (await http.post(path, json={"id": "task-other", "status": "completed"})).json() == {
        "status": "accepted"
    }
    view = await query_view(temporal, generation["id"])
    assert view.callbacks_received == 3
    duplicates = metric((await http.get("/metrics")).text, "api_callbacks_total", outcome="duplicate")
    assert duplicates - duplicates_before == sum(r.json()["status"] == "duplicate" for r in first) + 1


async def test_with_edge_dedup_off_every_repeat_is_signalled(
    api_with: ApiWith, provider: FakeProvider, http: httpx.AsyncClient, temporal: Client
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    async with api_with(ROOMY.model_copy(update={"callback_dedup_entries": 0})) as client:
        for _ in range(2):
            response = await client.post(
                callback_path(generation["id"]), json={"id": task_id, "status": "processing"}
            )
            assert response.json() == {"status": "accepted"}
    # Both reached the workflow, which recognises the second as a duplicate and ignores it.
    assert (await query_view(temporal, generation["id"])).callbacks_received == 2


@pytest.mark.parametrize(
    "path",
    [
        "/callbacks/gptimage2/not-a-token",
        "/callbacks/gptimage2/{id}.0123456789abcdef0123456789abcdef",
        "/callbacks/gptimage2/{other_secret}",
        "/callbacks/gptimage2/{id}",
    ],
)
async def test_callback_with_a_bad_token_is_401_and_signals_nothing(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client, path: str
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    forged = mint_callback_token("some-other-secret", generation["id"])
    url = path.format(id=generation["id"], other_secret=forged)
    response = await http.post(url, json={"id": task_id, "status": "completed"})
    assert response.status_code == 401
    assert (await query_view(temporal, generation["id"])).callbacks_received == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'"id"',
        b"{}",
        b'{"id": 5}',
        b'{"id": ""}',
        b'{"status": "completed"}',
        b"\xff",
    ],
)
async def test_unparseable_callback_is_400_and_signals_nothing(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client, raw: bytes
) -> None:
    generation = await started(http)
    await provider.wait_for_task(generation["id"])
    response = await http.post(
        callback_path(generation["id"]), content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert (await query_view(temporal, generation["id"])).callbacks_received == 0


async def test_callback_parsing_is_tolerant(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    generation = await started(http)
    await provider.wait_for_task(generation["id"])
    odd = {"id": "task-from-elsewhere", "status": 7, "progress": "lots", "usage": "n/a"}
    assert (await http.post(callback_path(generation["id"]), json=odd)).status_code == 200
    view = await query_view(temporal, generation["id"])
    assert view.callbacks_received == 1
    assert [o.task_id for o in view.orphans] == ["task-from-elsewhere"]


async def test_callback_for_an_unknown_generation_is_404(http: httpx.AsyncClient) -> None:
    unknown = generation_workflow_id("demo", "nobody", uuid.uuid4().hex)
    for _ in range(2):  # a refused hint is not remembered as delivered: its retry is refused too
        response = await http.post(callback_path(unknown), json={"id": "task-1", "status": "completed"})
        assert response.status_code == 404


async def test_a_delivered_generation_is_final(
    http: httpx.AsyncClient, provider: FakeProvider, temporal: Client
) -> None:
    payload, key = body(), uuid.uuid4().hex
    generation = (await create(http, payload, key=key)).json()
    task_id = await provider.wait_for_task(generation["id"])
    provider.complete(task_id)
    # The callback is only a hint: the workflow re-reads the task, sees it completed, re-hosts.
    assert (
        await http.post(callback_path(generation["id"]), json={"id": task_id, "status": "completed"})
    ).status_code == 200
    handle = temporal.get_workflow_handle_for(VideoGenerationWorkflow.run, generation["id"])
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.status == "delivered" and result.callbacks_received == 1

    # The provider's repeat of that hint is answered from the API's memory; news for an ended
    # generation is acknowledged as late (a non-2xx would only be retried).
    repeat_hint = await http.post(
        callback_path(generation["id"]), json={"id": task_id, "status": "completed"}
    )
    assert (repeat_hint.status_code, repeat_hint.json()) == (200, {"status": "duplicate"})
    late = await http.post(callback_path(generation["id"]), json={"id": task_id, "status": "failed"})
    assert (late.status_code, late.json()) == (200, {"status": "late"})
    fetched = (await http.get(f"/v1/generations/{generation['id']}", headers=auth("demo"))).json()
    assert fetched["status"] == "delivered"
    assert fetched["outputs"][0]["object_key"].endswith("final-0.mp4")
    assert set(fetched["outputs"][0]) == {"url", "object_key", "sha256", "size_bytes", "content_type"}
    assert fetched["provider_task_ids"] == [task_id] and fetched["credits"] > 0
    repeat = await create(http, payload, key=key)
    assert (repeat.status_code, repeat.json()["id"]) == (200, generation["id"])
    assert (await create(http, {**payload, "duration": 9}, key=key)).status_code == 409
    cancel = await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    assert (cancel.status_code, cancel.json()) == (200, fetched)
    assert (
        await http.post(f"/v1/generations/{generation['id']}/approve", headers=auth("demo"))
    ).status_code == 409
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_a_callback_for_an_ended_generation_is_late_and_a_repeat_costs_temporal_nothing(
    api_with: ApiWith, provider: FakeProvider, http: httpx.AsyncClient, temporal: Client
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    assert (
        await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    ).status_code == 200
    handle = temporal.get_workflow_handle_for(VideoGenerationWorkflow.run, generation["id"])
    assert (await asyncio.wait_for(handle.result(), 30)).status == "cancelled"
    path = callback_path(generation["id"])
    # A replica of its own, so its counters see only these callbacks.
    async with api_with(ROOMY) as client:

        async def sent(hint: dict[str, Any]) -> tuple[float, float]:
            before = (await client.get("/metrics")).text
            response = await client.post(path, json=hint)
            assert (response.status_code, response.json()) == (200, {"status": "late"})
            after = (await client.get("/metrics")).text
            late = metric(after, "api_callbacks_total", outcome="late") - metric(
                before, "api_callbacks_total", outcome="late"
            )
            return late, metric(after, "api_temporal_calls_total") - metric(
                before, "api_temporal_calls_total"
            )

        # The first one for this generation learns that it has ended: the signal is refused,
        # and one describe tells "ended" from "never existed".
        assert await sent({"id": task_id, "status": "completed"}) == (1, 2)
        # From then on the replica knows: any callback for it, repeat or news, costs Temporal nothing.
        for hint in (
            {"id": task_id, "status": "completed"},
            {"id": task_id, "status": "failed"},
            {"id": "task-x"},
        ):
            assert await sent(hint) == (1, 0)
    assert (await query_view(temporal, generation["id"])).callbacks_received == 0


async def test_with_memory_off_each_late_callback_asks_temporal_again(
    api_with: ApiWith, provider: FakeProvider, http: httpx.AsyncClient, temporal: Client
) -> None:
    generation = await started(http)
    await provider.wait_for_task(generation["id"])
    await http.post(f"/v1/generations/{generation['id']}/cancel", headers=auth("demo"))
    await asyncio.wait_for(temporal.get_workflow_handle(generation["id"]).result(), 30)
    async with api_with(ROOMY.model_copy(update={"callback_dedup_entries": 0})) as client:
        for _ in range(2):
            response = await client.post(callback_path(generation["id"]), json={"id": "task-x"})
            assert (response.status_code, response.json()) == (200, {"status": "late"})
        assert metric((await client.get("/metrics")).text, "api_temporal_calls_total") == 4


# ---- listing ---------------------------------------------------------------------------------


async def test_list_is_per_tenant_filtered_and_paginated(http: httpx.AsyncClient) -> None:
    user = f"lister-{uuid.uuid4().hex[:8]}"
    ids = {(await started(http, user_id=user))["id"] for _ in range(3)}
    theirs = (await create(http, body(user_id=user), tenant="acme")).json()["id"]

    async def listed() -> set[str] | None:
        response = await http.get("/v1/generations", params={"user_id": user}, headers=auth("demo"))
        found = {item["id"] for item in response.json()["data"]}
        return found if found >= ids else None

    # Visibility is eventually consistent: wait until the index has caught up.
    assert await wait_for(listed) == ids
    page = await http.get("/v1/generations", params={"user_id": user, "page_size": 2}, headers=auth("demo"))
    first = page.json()
    assert len(first["data"]) == 2 and first["next_page_token"]
    rest = await http.get(
        "/v1/generations",
        params={"user_id": user, "page_size": 2, "page_token": first["next_page_token"]},
        headers=auth("demo"),
    )
    assert {i["id"] for i in first["data"]} | {i["id"] for i in rest.json()["data"]} == ids
    assert all(item["status"] in ("queued", "processing") for item in first["data"])
    other = await http.get("/v1/generations", params={"user_id": user}, headers=auth("acme"))
    assert theirs not in ids and {i["id"] for i in other.json()["data"]} <= {theirs}
    assert (
        await http.get(
            "/v1/generations", params={"status": "delivered", "user_id": user}, headers=auth("demo")
        )
    ).json()["data"] == []


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"page_token": "%%%"}, 400),
        ({"page_token": "AAAA"}, 400),
        ({"page_token": "AAAA.0123456789abcdef0123456789abcdef"}, 400),
        ({"page_size": 0}, 422),
        ({"page_size": 101}, 422),
        ({"status": "done"}, 422),
        ({"user_id": "a\x00b"}, 422),
        ({"user_id": "a\u202eb"}, 422),
        ({"user_id": "\ufeffa"}, 422),
        ({"user_id": "u" * 129}, 422),
    ],
)
async def test_bad_list_parameters_are_refused(
    http: httpx.AsyncClient, params: dict[str, Any], status: int
) -> None:
    response = await http.get("/v1/generations", params=params, headers=auth("demo"))
    assert response.status_code == status, response.text


async def test_page_tokens_only_work_for_the_query_they_came_from(http: httpx.AsyncClient) -> None:
    user = f"pager-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        await started(http, user_id=user)

    async def token() -> str | None:
        page = await http.get(
            "/v1/generations", params={"user_id": user, "page_size": 1}, headers=auth("demo")
        )
        value: str | None = page.json()["next_page_token"]
        return value

    sealed = await wait_for(token)
    replays = [
        ("acme", {"user_id": user}),  # another tenant
        ("demo", {"user_id": "someone-else"}),  # another filter
        ("demo", {"user_id": user, "status": "queued"}),
    ]
    for tenant, params in replays:
        response = await http.get(
            "/v1/generations", params={**params, "page_token": sealed}, headers=auth(tenant)
        )
        assert response.status_code == 400, (tenant, params)
    ok = await http.get(
        "/v1/generations", params={"user_id": user, "page_token": sealed}, headers=auth("demo")
    )
    assert ok.status_code == 200


# ---- limits ----------------------------------------------------------------------------------


async def test_oversized_bodies_are_413(http: httpx.AsyncClient) -> None:
    big = {"user_id": "u", "prompt": "x" * (70 * 1024)}
    headers = {**auth("demo"), "Idempotency-Key": uuid.uuid4().hex}
    assert (await http.post("/v1/generations", json=big, headers=headers)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"x" * 1024

    chunked = await http.post("/v1/generations", content=chunks(), headers=headers)
    assert chunked.status_code == 413
    assert chunked.json()["error"]["type"] == "request_too_large"
    callback = await http.post("/callbacks/gptimage2/x.y", content=b"{" + b" " * (70 * 1024) + b"}")
    assert callback.status_code == 413


@pytest.mark.parametrize("size", [20 * 1024, 300 * 1024])
async def test_oversized_headers_are_refused(http: httpx.AsyncClient, size: int) -> None:
    # A block that arrives whole is checked by the app (431); one h11 has to buffer across
    # reads is cut off by h11's own limit (400) before the app sees it.
    response = await http.get("/v1/generations", headers={**auth("demo"), "X-Padding": "x" * size})
    assert response.status_code in (400, 431)
    assert (await http.get("/healthz")).status_code == 200


async def test_rate_limit_is_per_tenant_with_retry_after(
    temporal_env: WorkflowEnvironment, provider_queue: tuple[FakeProvider, str], dev_tls: TLSFiles
) -> None:
    config = ApiConfig(rate_limit_per_second=0.01, rate_limit_burst=3)
    settings = api_settings(temporal_address(temporal_env.client), provider_queue[1], dev_tls)
    with serving(create_app(settings, config=config), tls=dev_tls, config=config) as server:
        async with httpx.AsyncClient(base_url=server.base_url, verify=dev_tls.ssl_context()) as http:
            codes = [
                (await http.get("/v1/generations/x", headers=auth("demo"))).status_code for _ in range(4)
            ]
            assert codes == [404, 404, 404, 429]
            limited = await http.get("/v1/generations/x", headers=auth("demo"))
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["retry-after"]) <= 100
            assert limited.json()["error"]["type"] == "rate_limited"
            assert (await http.get("/v1/generations/x", headers=auth("acme"))).status_code == 404
            # Callbacks are never throttled: losing one costs a poll cycle.
            assert (await http.post("/callbacks/gptimage2/x.y", json={"id": "t"})).status_code == 401


# ---- observability and secrets ---------------------------------------------------------------


async def test_metrics_count_requests_callbacks_and_generations(
    http: httpx.AsyncClient, provider: FakeProvider
) -> None:
    before = (await http.get("/metrics")).text
    payload, key = body(), uuid.uuid4().hex
    generation = (await create(http, payload, key=key)).json()
    await create(http, payload, key=key)
    await create(http, {**payload, "duration": 7}, key=key)
    await create(http, body(duration=1))
    task_id = await provider.wait_for_task(generation["id"])
    await http.post(callback_path(generation["id"]), json={"id": task_id})
    await http.post("/callbacks/gptimage2/forged.0123456789abcdef0123456789abcdef", json={"id": task_id})
    after = (await http.get("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    for outcome in ("started", "duplicate", "conflict", "invalid"):
        assert grew("api_generation_requests_total", outcome=outcome) == 1, outcome
    assert grew("api_callbacks_total", outcome="accepted") == 1
    assert grew("api_callbacks_total", outcome="bad_token") == 1
    assert grew("api_callback_seconds_count") == 2
    assert grew("api_requests_total", route="/v1/generations", method="POST", status="202") == 1
    assert grew("api_requests_total", route="/callbacks/gptimage2/{token}", method="POST", status="401") == 1
    assert generation["id"] not in after  # routes are labelled by template, never by id or token


async def test_secrets_never_reach_the_logs(
    http: httpx.AsyncClient, provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    token = mint_callback_token(CALLBACK_SECRET, generation["id"])
    signed = "https://cdn.provider.invalid/v.mp4?X-Amz-Credential=AKIAABCDEFGHIJKLMNOP&X-Amz-Signature=deadbeefcafe"
    callback = {
        "id": task_id,
        "status": "completed",
        "results": [signed],
        "api_key": "sk-live-0123456789abcdefghij",
        "headers": {"Authorization": "Bearer provider-bearer-secret"},
    }
    with caplog.at_level(logging.DEBUG):
        assert (await http.post(f"/callbacks/gptimage2/{token}", json=callback)).status_code == 200
        await http.get("/v1/generations", headers=auth("acme"))
        await http.get("/v1/generations", headers={"Authorization": "Bearer guessed-key"})
    # What the API process wrote; the test's own HTTP client logs its URLs, tokens included.
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert task_id in text and REDACTED in text  # the body was logged, redacted
    for secret in (
        "deadbeefcafe",
        "AKIAABCDEFGHIJKLMNOP",
        "sk-live-0123456789abcdefghij",
        "provider-bearer-secret",
        token.rpartition(".")[2],
        TENANT_KEYS["acme"],
        "guessed-key",
    ):
        assert secret not in text, secret


@pytest.mark.parametrize(
    ("raw", "kept", "gone"),
    [
        ('{"url": "https://a.example/v.mp4?sig=abc123&exp=1"}', "https://a.example/v.mp4?", "abc123"),
        ('{"access_token": "tok-123456"}', "access_token", "tok-123456"),
        ('{"Authorization": "Bearer xyz987"}', "Authorization", "xyz987"),
        ('{"secret_key": 123456789}', "secret_key", "123456789"),
        ("Authorization: Bearer abc.def.ghi", "Authorization", "abc.def.ghi"),
        ('{"note": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"}', "note", "eyJhbGciOiJIUzI1NiJ9"),
        ('{"id": "task-1", "status": "completed"}', '"id": "task-1"', "[REDACTED]"),
    ],
)
def test_redaction(raw: str, kept: str, gone: str) -> None:
    cleaned = redact(raw)
    assert kept in cleaned and gone not in cleaned


def test_logged_bodies_are_bounded() -> None:
    logged = redact_body(b'{"id": "t", "pad": "' + b"x" * 10_000 + b'"}', 2048)
    assert len(logged) < 2100 and logged.endswith("bytes]")


def test_recent_keys_forget_the_oldest_first() -> None:
    recent: Recent[tuple[str, str, str]] = Recent(2)
    a, b, c = (
        ("gen-a", "task-1", "completed"),
        ("gen-b", "task-2", "completed"),
        ("gen-a", "task-1", "failed"),
    )
    recent.add(a)
    recent.add(b)
    assert a in recent  # and is now the most recently used
    recent.add(c)
    assert a in recent and c in recent and b not in recent and len(recent) == 2
    off: Recent[tuple[str, str, str]] = Recent(0)
    off.add(a)
    assert a not in off and len(off) == 0


# ---- the published contract ------------------------------------------------------------------


async def test_a_query_that_is_not_utf8_is_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/generations?user_id=a%FF%FEb", headers=auth("demo"))
    assert response.status_code == 400 and field_names(response) == {"query"}


# ---- the character rule and the JSON body parser, as pure logic -----------------------------


@pytest.mark.parametrize(
    ("char", "prompt_ok", "line_ok"),
    [
        ("a", True, True),
        ("\t", True, False),
        ("\n", True, False),
        ("\r", True, False),
        ("\x00", False, False),
        ("\x1b", False, False),
        ("\x7f", False, False),
        ("\x85", False, False),
        ("\x9f", False, False),
        ("\xa0", True, True),  # no-break space: text
        ("\ufeff", False, False),
        ("\u200e", True, True),  # direction marks: right-to-left prose needs them
        ("\u200f", True, True),
        ("\u061c", True, True),
        ("\u200d", True, True),  # zero-width joiner: emoji sequences
        *[(chr(c), False, False) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]],
        ("\u202f", True, True),  # narrow no-break space, just past the overrides
        ("\ud800", False, False),
        ("\udfff", False, False),
        ("\U0001f600", True, True),
    ],
)
def test_the_character_rule(char: str, prompt_ok: bool, line_ok: bool) -> None:
    value = f"ab{char}c"
    assert (text_problem(value, multiline=True) is None) is prompt_ok
    assert (text_problem(value) is None) is line_ok
    if not line_ok:
        assert f"U+{ord(char):04X}" in (text_problem(value) or "") and "at position 2" in (
            text_problem(value) or ""
        )
    # The pattern published in the schema says the same (lone surrogates aside: see api.text).
    if not "\ud800" <= char <= "\udfff":
        assert (re.match(json_schema_pattern(multiline=True), value) is not None) is prompt_ok
        assert (re.match(json_schema_pattern(multiline=False), value) is not None) is line_ok


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        (b'{"a": 9223372036854775807, "b": -9223372036854775808}', None, None),
        (b'{"a": 9223372036854775808}', "a", "64 bits"),
        (b'{"a": -9223372036854775809}', "a", "64 bits"),
        (b'{"a": [1, 2, 1' + b"0" * 4999 + b"]}", "a[2]", "5000 characters"),
        (b'{"a": 1.5e308}', None, None),
        (b'{"a": 1e309}', "a", "out of range"),
        (b'{"a": 0.' + b"1" * 40 + b"}", "a", "longer than 32"),
        (b'{"a": {"b": -Infinity}}', "a.b", "not a JSON number"),
        (b'{"a": 1, "b": 2, "a": 3}', "a", "more than once"),
        (b'{"a": "\\udc00"}', "a", "lone surrogate"),
        (b'{"\\ud800": 1}', "\\ud800", "lone surrogate"),
        (b'{"a": "\\ud83d\\ude00"}', None, None),  # a surrogate pair is one character
        (b'{"a":' + b"[" * 31 + b"1" + b"]" * 31 + b"}", None, None),  # 32 levels
        (b'{"a":' + b"[" * 32 + b"1" + b"]" * 32 + b"}", "a" + "[0]" * 31, "32 levels"),
        (b"[" * 5000 + b"]" * 5000, "body", "32 levels"),
        (b"", "body", "empty"),
        (b'{"a": 1} {}', "body", "not JSON"),
        (b'{"a": "\x00"}', "body", "not JSON"),  # a raw control character inside a string
        (b"[]", "body", "JSON object"),
    ],
)
def test_the_json_body_parser(raw: bytes, field: str | None, says: str | None) -> None:
    if field is None:
        assert isinstance(parse_json_object(raw, "application/json"), dict)
        return
    with pytest.raises(BodyRefused) as refused:
        parse_json_object(raw, "application/json")
    assert says is not None and says in refused.value.message
    assert [p.field for p in refused.value.problems][:1] == [field]
    assert refused.value.api_error(malformed=400).response().status_code == 400


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/json", True),
        ("Application/JSON; charset=UTF-8", True),
        ('application/json; charset="utf-8"', True),
        ("application/problem+json", True),
        (None, False),
        ("", False),
        ("text/plain", False),
        ("text/json", False),
        ("application/jsonx", False),
        ("application/json; charset=iso-8859-1", False),
        ("multipart/form-data; boundary=x", False),
    ],
)
def test_only_json_media_types_are_read(content_type: str | None, ok: bool) -> None:
    assert (media_type_problem(content_type) is None) is ok
    if not ok:
        with pytest.raises(BodyRefused) as refused:
            parse_json_object(b"{}", content_type)
        assert refused.value.api_error(malformed=422).status_code == 415


async def test_openapi_declares_every_error_the_routes_return(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    create_op = spec["paths"]["/v1/generations"]["post"]
    assert {"200", "202", "400", "401", "409", "413", "415", "422", "429", "503"} <= set(
        create_op["responses"]
    )
    assert create_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CreateGenerationRequest"
    )
    callback_op = spec["paths"]["/callbacks/gptimage2/{token}"]["post"]
    assert {"200", "400", "401", "404", "413", "415", "503"} <= set(callback_op["responses"])
    assert "410" not in callback_op["responses"]  # an ended generation's callback is acknowledged
    assert "security" not in callback_op
    for verb in ("approve", "reject"):
        assert "409" in spec["paths"][f"/v1/generations/{{generation_id}}/{verb}"]["post"]["responses"]
    assert "HTTPValidationError" not in str(spec)


async def test_a_slow_signal_does_not_hold_the_callback_answer(
    api_with: ApiWith, provider: FakeProvider, http: httpx.AsyncClient, temporal: Client
) -> None:
    # An API that never waits for the signal: every callback is answered before it lands, and
    # the signal still reaches the workflow in the background.
    impatient = ROOMY.model_copy(update={"callback_answer_within_seconds": 1e-6})
    generation = await started(http)
    task_id = await provider.wait_for_task(generation["id"])
    async with api_with(impatient) as client:
        response = await client.post(
            callback_path(generation["id"]), json={"id": task_id, "status": "processing"}
        )
        assert response.status_code == 200 and response.json() == {"status": "accepted"}

        async def received() -> bool:
            return (await query_view(temporal, generation["id"])).callbacks_received == 1

        await wait_for(received)
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "api_callbacks_total", outcome="deferred") == 1
