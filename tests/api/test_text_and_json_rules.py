"""The HTTP API: the character rule and the JSON body parser, as pure logic."""

from __future__ import annotations

import re

import httpx
import pytest
from temporalio.client import Client

from api.jsonbody import BodyRefused, media_type_problem, parse_json_object
from api.text import json_schema_pattern, text_problem
from tests.helpers import assert_eventually
from tests.helpers.api import (
    ROOMY,
    ApiWith,
    callback_path,
    metric,
    query_view,
    started,
)
from tests.helpers.fake_provider import FakeProvider


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

        await assert_eventually(received, every=0.1)
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "api_callbacks_total", outcome="deferred") == 1
