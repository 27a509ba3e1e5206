"""The HTTP API: validation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.helpers.api import (
    ImageServer,
    assert_never_started,
    auth,
    body,
    create,
    field_names,
    started,
)

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
