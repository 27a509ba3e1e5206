"""Nothing private is readable in Temporal history: payloads are AES-GCM sealed under the first
configured key, any configured key opens them, the Web UI reads them through the API's codec
endpoint with the ops key only, and settings refuse the development secrets outside dev."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from api.app import create_app
from devstack.testbed import TESTBED_ENCRYPTION_KEYS, Testbed, converter_for_testbeds
from devstack.tls import TLSFiles
from settings import Settings
from temporal_client import ENCODING, KEY_ID, EncryptionCodec, PayloadDecryptionError, connect
from tests.helpers.api import api_settings, serving
from tests.helpers.flow import finished, prompt, start
from workflows.models import GenerationInput, GenerationStatus

KEY_A = ("key-a", b"a" * 32)
KEY_B = ("key-b", b"b" * 32)


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


# ---- the codec ---------------------------------------------------------------------------------


async def test_payload_is_sealed_with_the_key_id_in_its_metadata() -> None:
    codec = EncryptionCodec([KEY_A])
    [sealed] = await codec.encode([payload("a secret prompt")])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID] == b"key-a"
    assert b"secret" not in sealed.data and b"json/plain" not in sealed.data
    assert await codec.decode([sealed]) == [payload("a secret prompt")]


async def test_tampered_ciphertext_is_refused() -> None:
    codec = EncryptionCodec([KEY_A])
    [sealed] = await codec.encode([payload("a secret prompt")])
    flipped = bytearray(sealed.data)
    flipped[len(flipped) // 2] ^= 0x01
    tampered = Payload(metadata=sealed.metadata, data=bytes(flipped))
    with pytest.raises(PayloadDecryptionError, match="'key-a' failed authentication"):
        await codec.decode([tampered])


async def test_relabelling_a_payload_with_another_held_key_is_refused() -> None:
    [sealed] = await EncryptionCodec([KEY_A]).encode([payload("x")])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID: b"key-b"}, data=sealed.data)
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await EncryptionCodec([KEY_B, KEY_A]).decode([relabelled])


async def test_unknown_key_id_is_named() -> None:
    [sealed] = await EncryptionCodec([KEY_A]).encode([payload("x")])
    with pytest.raises(PayloadDecryptionError, match=r"key id 'key-a'.*holds key-b"):
        await EncryptionCodec([KEY_B]).decode([sealed])


async def test_payload_without_encryption_is_read_as_plain() -> None:
    # Histories recorded before encryption, and workflows in flight across the upgrade.
    assert await EncryptionCodec([KEY_A]).decode([payload("old")]) == [payload("old")]


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    [old] = await EncryptionCodec([KEY_A]).encode([payload("before rotation")])
    rotated = EncryptionCodec([KEY_B, KEY_A])
    [new] = await rotated.encode([payload("after rotation")])
    assert new.metadata[KEY_ID] == b"key-b"
    assert await rotated.decode([old, new]) == [payload("before rotation"), payload("after rotation")]


# ---- settings ----------------------------------------------------------------------------------

# Real-looking values, given as a deployment gives them: environment variables.
REAL_SECRETS = {
    "GPTIMAGE2_API_KEY": "prov-" + "k" * 30,
    "CALLBACK_SECRET": "cb-" + "s" * 40,
    "S3_ACCESS_KEY": "AKIAREALKEY",
    "S3_SECRET_KEY": "s3-" + "q" * 40,
    "API_KEYS": "tenant-a:" + "t" * 32,
    "HISTORY_ENCRYPTION_KEYS": "2026-11:" + base64.b64encode(os.urandom(32)).decode(),
    "WEBHOOK_SIGNING_KEY": "wh-" + "w" * 40,
}


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    # conftest sets ENVIRONMENT=dev for the whole session; these tests need it unset.
    monkeypatch.delenv("ENVIRONMENT")
    for name, value in REAL_SECRETS.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


@pytest.mark.parametrize(
    ("variable", "dev_value"),
    [
        ("CALLBACK_SECRET", None),
        ("GPTIMAGE2_API_KEY", None),  # the simulator's sim-key
        ("S3_SECRET_KEY", None),
        ("HISTORY_ENCRYPTION_KEYS", None),
        ("WEBHOOK_SIGNING_KEY", None),
        ("API_KEYS", "demo:demo-secret"),
        ("API_KEYS", "ours:" + "x" * 20 + ",acme:acme-secret"),
        ("API_KEYS", "tenant-a:change-me"),  # deploy/prod.env.example, unedited
        ("CALLBACK_SECRET", "change-me"),
        ("OPS_API_KEY", "change-me"),
    ],
)
def test_development_secret_outside_dev_is_refused_naming_the_variable(
    production: pytest.MonkeyPatch, variable: str, dev_value: str | None
) -> None:
    if dev_value is None:
        production.delenv(variable)  # the default
    else:
        production.setenv(variable, dev_value)
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    message = str(raised.value)
    assert f"{variable} holds the development default; set a real secret or ENVIRONMENT=dev" in message
    for name, real in REAL_SECRETS.items():  # and no secret it was given is printed
        assert name == variable or real not in message


def test_a_refusal_never_prints_the_values_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic prints a failed model's input (truncated when long): here one short real secret.
    monkeypatch.delenv("ENVIRONMENT")
    monkeypatch.setenv("CALLBACK_SECRET", "real-cb-7Hq2")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    assert "GPTIMAGE2_API_KEY" in str(raised.value) and "real-cb-7Hq2" not in str(raised.value)


def test_real_secrets_pass_outside_dev(production: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).environment == "production"


def test_development_defaults_pass_with_environment_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "dev")
    assert Settings(_env_file=None).history_encryption_key_list()[0][0] == "dev-2024"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("no-colon", "key-id:base64-key pairs"),
        ("k1:" + base64.b64encode(b"short").decode(), "'k1' must be 32 bytes"),
        ("k1:not base64!", "'k1' must be 32 bytes"),
        (f"k1:{base64.b64encode(b'x' * 32).decode()},k1:{base64.b64encode(b'y' * 32).decode()}", "twice"),
        ("", "at least one"),
    ],
)
def test_malformed_history_keys_are_named(value: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=f"HISTORY_ENCRYPTION_KEYS.*{problem}"):
        Settings(_env_file=None, environment="dev", history_encryption_keys=SecretStr(value))


# ---- real servers ------------------------------------------------------------------------------


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every Payload anywhere inside a history event, except search attributes (indexed by the
    server, so never encrypted; they hold ids, statuses and a prompt hash, not text)."""
    if isinstance(message, Payload):
        yield message
        return
    if isinstance(message, SearchAttributes):
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if not field.is_repeated:
            yield from payloads_in(value)
            continue
        for item in list(value.values()) if field.message_type.GetOptions().map_entry else list(value):
            if isinstance(item, Message):
                yield from payloads_in(item)


async def raw_client(stack: Testbed) -> Client:
    """A client as someone with UI access has it: no codec."""
    return await Client.connect(stack.settings.temporal_address, namespace=stack.settings.temporal_namespace)


async def delivered_generation(stack: Testbed) -> tuple[str, str, str, str]:
    """(workflow id, prompt, image URL, signed result URL) of a finished image-to-video run."""
    text = prompt("A lighthouse keeper whispers a secret")
    image = f"{stack.sim.base_url}/_sim/images/sample.png?marker={uuid.uuid4().hex}"
    started = await start(stack, text, image_urls=[image], quality="480p", duration=4, generate_audio=False)
    view = await finished(stack, started.view.id)
    assert view.status is GenerationStatus.DELIVERED, view.failure_message
    async with stack.provider() as provider:
        task = await provider.get_task(view.provider_task_ids[-1])
    assert task.results
    return started.view.id, text, image, task.results[0]


async def test_history_read_without_the_codec_holds_no_prompt_image_or_result_url(stack: Testbed) -> None:
    workflow_id, text, image, result_url = await delivered_generation(stack)
    history = await (await raw_client(stack)).get_workflow_handle(workflow_id).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    for secret in (text, image, result_url, result_url.split("?")[0]):
        assert secret.encode() not in raw
    found = [(event.event_type, p) for event in history.events for p in payloads_in(event)]
    sealed = [p for _, p in found if KEY_ID in p.metadata]
    assert len(sealed) > 5
    assert {p.metadata[KEY_ID] for p in sealed} == {b"testbed"}
    assert all(p.metadata["encoding"] == ENCODING for p in sealed)
    # Only the SDK's own local-activity marker header (sequence number, activity type, times)
    # is written around the converter; the activity result beside it is sealed.
    assert {kind for kind, p in found if KEY_ID not in p.metadata} <= {EventType.EVENT_TYPE_MARKER_RECORDED}

    # With the codec (the converter every process uses) the same bytes decode.
    started = history.events[0]
    assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    [decoded] = await converter_for_testbeds().decode(
        started.workflow_execution_started_event_attributes.input.payloads, [GenerationInput]
    )
    assert decoded.spec.params.prompt == text and decoded.spec.params.image_urls == [image]


async def test_rotation_on_a_real_server(stack: Testbed) -> None:
    workflow_id, _, _, _ = await delivered_generation(stack)  # sealed with the testbed key
    new_key = base64.b64encode(os.urandom(32)).decode()
    rotated = stack.settings.model_copy(
        update={
            "history_encryption_keys": SecretStr(
                f"rotated:{new_key},{TESTBED_ENCRYPTION_KEYS.get_secret_value()}"
            )
        }
    )
    client = await connect(rotated)
    old_result = await client.get_workflow_handle(workflow_id).result()
    assert old_result["status"] == "delivered"

    # New payloads use the new key; a client that lacks it names the key it is missing.
    tb = Testbed(
        client, rotated, stack.sim, stack.s3, stack.tls, stack.api_url, f"no-worker-{uuid.uuid4().hex}"
    )
    started = await start(tb, prompt("After rotation"))
    handle = client.get_workflow_handle(started.view.id)
    try:
        history = await handle.fetch_history()
        [sealed] = history.events[0].workflow_execution_started_event_attributes.input.payloads
        assert sealed.metadata[KEY_ID] == b"rotated"
        with pytest.raises(PayloadDecryptionError, match="key id 'rotated'"):
            await converter_for_testbeds().decode([sealed], [GenerationInput])
    finally:
        await handle.terminate("test over")


async def test_codec_endpoint_decodes_for_the_ops_key_only(stack: Testbed) -> None:
    workflow_id, text, _, _ = await delivered_generation(stack)
    history = await (await raw_client(stack)).get_workflow_handle(workflow_id).fetch_history()
    sealed = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    body = {"payloads": [json_format.MessageToDict(sealed)]}
    assert stack.settings.ops_api_key
    ops = {"Authorization": f"Bearer {stack.settings.ops_api_key.get_secret_value()}"}
    namespace = {"X-Namespace": stack.settings.temporal_namespace}
    async with httpx.AsyncClient(base_url=stack.api_url, verify=stack.tls.ssl_context()) as http:
        answer = await http.post("/codec/decode", json=body, headers={**ops, **namespace})
        assert answer.status_code == 200, answer.text
        [plain] = answer.json()["payloads"]
        decoded = json_format.ParseDict(plain, Payload())
        assert decoded.metadata["encoding"] == b"json/plain" and text.encode() in decoded.data

        # encode then decode round-trips, as the UI does when it starts or signals a workflow
        encoded = await http.post("/codec/encode", json={"payloads": [plain]}, headers=ops)
        [again] = encoded.json()["payloads"]
        assert json_format.ParseDict(again, Payload()).metadata[KEY_ID] == b"testbed"

        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic b3BzOm9wcw=="}):
            refused = await http.post("/codec/decode", json=body, headers=headers)
            assert refused.status_code == 401 and text not in refused.text

        other = await http.post("/codec/decode", json=body, headers={**ops, "X-Namespace": "someone-else"})
        assert other.status_code == 400 and "X-Namespace" in other.text

        assert (await http.post("/codec/decode", json={"payloads": "x"}, headers=ops)).status_code == 400


async def test_codec_endpoint_cors_allows_the_web_ui_origin_only(stack: Testbed) -> None:
    ui = stack.settings.temporal_ui_url.rstrip("/")
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with httpx.AsyncClient(base_url=stack.api_url, verify=stack.tls.ssl_context()) as http:
        allowed = await http.options("/codec/decode", headers={"Origin": ui, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ui
        assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
        for origin in ("https://evil.example", "http://127.0.0.1:1"):
            refused = await http.options("/codec/decode", headers={"Origin": origin, **preflight})
            assert "access-control-allow-origin" not in refused.headers
        # The rest of the API grants no origin at all, the UI's included.
        api = await http.options("/v1/generations", headers={"Origin": ui, **preflight})
        assert "access-control-allow-origin" not in api.headers


async def test_codec_endpoint_is_off_without_an_ops_key(dev_tls: TLSFiles) -> None:
    settings = api_settings("127.0.0.1:1", "unused", dev_tls)
    assert settings.ops_api_key is None
    with serving(create_app(settings), tls=dev_tls) as server:
        async with httpx.AsyncClient(base_url=server.base_url, verify=dev_tls.ssl_context()) as http:
            answer = await http.post(
                "/codec/decode", json={"payloads": []}, headers={"Authorization": "Bearer anything"}
            )
    assert answer.status_code == 403 and "OPS_API_KEY" in answer.text
