"""Callback bodies are logged for forensics, but they carry signed result URLs (whose query
string is a bearer credential for 24 h) and may carry anything else a provider adds. Redact
first, then truncate."""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

# "key": "value" pairs whose name says secret; the value (a string or a bare token) goes.
_SECRET_FIELD_RE = re.compile(
    r'("(?:[^"\\]|\\.)*(?:key|token|secret|password|passwd|authorization|auth|signature|credential|cookie|session)'
    r'(?:[^"\\]|\\.)*"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)',
    re.IGNORECASE,
)
# Query strings of URLs: presigned S3/CDN links put their signature there.
_URL_QUERY_RE = re.compile(r"(https?://[^\s\"'?#]*)\?[^\s\"'#]*", re.IGNORECASE)
_BEARER_RE = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# Shapes of well-known credentials wherever they appear: JWTs, sk-/pk- API keys, AWS key ids.
_TOKEN_SHAPES_RE = re.compile(
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|\b(?:sk|pk|rk)[-_][A-Za-z0-9_-]{12,}"
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"
)


def redact(text: str) -> str:
    text = _SECRET_FIELD_RE.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)
    text = _URL_QUERY_RE.sub(lambda m: m.group(1) + "?" + REDACTED, text)
    text = _BEARER_RE.sub(lambda m: m.group(1) + REDACTED, text)
    return _TOKEN_SHAPES_RE.sub(REDACTED, text)


def redact_body(raw: bytes, limit: int) -> str:
    """The body as text, secrets removed, then cut to at most `limit` characters.

    Redacting before cutting means a cut can never leave half a secret unrecognised; bodies
    are already bounded by the request size limit, so this stays cheap.
    """
    text = redact(raw.decode("utf-8", "replace"))
    if len(text) > limit:
        return text[:limit] + f"…[{len(raw)} bytes]"
    return text
