"""How every process talks to Temporal: one data converter and one `connect`.

Everything the SDK writes into history through the data converter (workflow and activity
arguments and results, signals, queries, memos, failure messages and stack traces) holds
prompts, image URLs and signed result URLs, and Temporal's history is readable by anyone with
Web UI access. So payloads are pydantic JSON (as before), then sealed with AES-256-GCM under
the first of `HISTORY_ENCRYPTION_KEYS`; the key's id travels in the payload's metadata so any
of the configured keys can open it (rotation: add the new key first, keep the old ones until no
history needs them). Search attributes never pass through the codec: they stay readable and
must never hold prompt text (workflows.search_attributes lists them).

Payloads without the encryption marker are returned as they are: histories recorded before
encryption (tests/histories) and workflows in flight across the upgrade keep working.

The worker, the API, starter.py, the dev stack, the benchmarks and the test fixtures all build
their converter here: a client with another converter could neither read nor write payloads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from settings import Settings

R = TypeVar("R")

# Where the API serves the codec server protocol for the Web UI and CLI (api/codec.py).
CODEC_PATH = "/codec"
ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
# 96-bit random nonces (NIST SP 800-38D's recommended size); with a fresh nonce per payload a
# key stays safe for about 2^32 payloads, far beyond a rotation period.
NONCE_BYTES = 12


class PayloadDecryptionError(ValueError):
    """An encrypted payload could not be opened: unknown key id, or not authentic."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole serialized payload; `keys` are (key id, 32-byte key), the
    first encrypts and all decrypt."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("EncryptionCodec needs at least one key")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}
        self._current = keys[0][0]

    @property
    def current_key_id(self) -> str:
        return self._current

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._seal(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(payload) for payload in payloads]

    def _seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._current.encode()
        # The key id is authenticated too: relabelling a payload with another key id fails.
        sealed = self._keys[self._current].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._keys.get(key_id)
        if cipher is None:
            held = ", ".join(sorted(self._keys))
            raise PayloadDecryptionError(
                f"payload is encrypted with key id {key_id!r}, which HISTORY_ENCRYPTION_KEYS does not "
                f"hold (it holds {held}); add that key back to decrypt it"
            )
        try:
            plain = cipher.decrypt(
                payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode("utf-8")
            )
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r} failed authentication (altered or truncated)"
            ) from None
        return Payload.FromString(plain)


def encryption_codec(settings: Settings) -> EncryptionCodec:
    return EncryptionCodec(settings.history_encryption_key_list())


def data_converter(settings: Settings) -> DataConverter:
    """The project's pydantic converter, encrypting. Failure messages and stack traces move into
    an encoded payload too (they can quote a URL or a prompt)."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=encryption_codec(settings),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
    )


async def query_or_none(handle: WorkflowHandle[Any, Any], query: Callable[..., R], *args: Any) -> R | None:
    """`query`'s answer, or None when the workflow does not exist (an entity workflow, such as a
    tenant's ledger or endpoint registry, that nothing has started yet)."""
    try:
        answer: R = await handle.query(query, *args)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return answer
