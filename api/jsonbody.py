"""Request bodies: the one step between the bytes a client sent and any model, on every route
that takes a body, so that what pydantic, the logs and Temporal see is plain, bounded JSON.

- `Content-Type` must be JSON (`application/json` or `application/*+json`; a charset, if
  named, must be UTF-8), or the answer is 415. (Size is limited before this, in `limits`.)
- The bytes must be UTF-8, without a byte order mark: `json.loads` would otherwise guess
  UTF-16 or UTF-32 and accept them.
- Strict JSON (RFC 8259): no `NaN` or `Infinity`, no key twice in one object (which value
  counts differs between parsers), nothing after the document.
- Numbers: integers fit in 64 bits (a 5000-digit one is refused before Python converts it),
  other numbers are finite and at most `MAX_NUMBER_CHARS` characters.
- At most `MAX_DEPTH` levels of arrays and objects (deeper input would exhaust the parser's
  recursion long before it reaches any model).
- No string, key or value, holds a lone surrogate (`"\\ud800"`): `text.lone_surrogate_problem`.

Each problem is reported with the field it is in (`duration`, `image_urls[0]`), at most
`MAX_PROBLEMS` of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from .errors import ApiError, FieldError, field_name
from .text import lone_surrogate_problem

JSON_MEDIA_TYPE = "application/json"
MAX_DEPTH = 32
MAX_INT_BITS = 64
MAX_NUMBER_CHARS = 32
MAX_PROBLEMS = 10
_INT_LIMIT = 2 ** (MAX_INT_BITS - 1)
_INT_MAX_DIGITS = len(str(_INT_LIMIT))


class BodyRefused(Exception):
    """The body is not acceptable JSON: 415 for the wrong media type, else `malformed` (the
    route's status for a body it cannot read)."""

    def __init__(self, problems: Sequence[FieldError], *, media_type: bool = False) -> None:
        self.problems = list(problems)
        self.media_type = media_type
        super().__init__(self.message)

    @property
    def message(self) -> str:
        if self.media_type:
            return self.problems[0].message
        return "invalid JSON body: " + "; ".join(
            p.message if p.field == "body" else f"{p.field}: {p.message}" for p in self.problems
        )

    def api_error(self, malformed: int) -> ApiError:
        if self.media_type:
            return ApiError(415, "unsupported_media_type", self.message, fields=self.problems)
        kind = "validation_error" if malformed == 422 else "invalid_request"
        return ApiError(malformed, kind, self.message, fields=self.problems)


def media_type_problem(content_type: str | None) -> str | None:
    if not content_type:
        return f"Content-Type must be {JSON_MEDIA_TYPE} (none was sent)"
    media, *parameters = content_type.split(";")
    media = media.strip().lower()
    if media != JSON_MEDIA_TYPE and not (media.startswith("application/") and media.endswith("+json")):
        return f"Content-Type must be {JSON_MEDIA_TYPE}, not {content_type[:100]!r}"
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return f"JSON must be UTF-8, not charset={charset[:40]!r}"
    return None


def parse_json_object(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """The body as a JSON object, or BodyRefused naming each problem."""
    problem = media_type_problem(content_type)
    if problem:
        raise BodyRefused([FieldError(field="Content-Type", message=problem)], media_type=True)
    document = _parse(raw)
    problems = _problems(document)
    if problems:
        raise BodyRefused(problems)
    if not isinstance(document, dict):
        raise BodyRefused([FieldError(field="body", message="body must be a JSON object")])
    return document


class _Refused:
    """Left in the document by a parser hook where a value cannot be accepted; `_problems`
    reports it with its field (the hooks themselves do not know where they are)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _abbreviated(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} characters)"


def _integer(text: str) -> int | _Refused:
    # Checked on the digits first: converting thousands of them is itself the attack.
    if len(text.lstrip("-")) <= _INT_MAX_DIGITS:
        value = int(text)
        if -_INT_LIMIT <= value < _INT_LIMIT:
            return value
    return _Refused(f"integer {_abbreviated(text)} is out of range (at most {MAX_INT_BITS} bits)")


def _number(text: str) -> float | _Refused:
    if len(text) > MAX_NUMBER_CHARS:
        return _Refused(f"number {_abbreviated(text)} is longer than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        return _Refused(f"number {text} is out of range")
    return value


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        result[key] = _Refused("the key appears more than once") if key in result else value
    return result


_DECODER = json.JSONDecoder(
    parse_int=_integer, parse_float=_number, parse_constant=_constant, object_pairs_hook=_object
)


def _parse(raw: bytes) -> Any:
    def refused(message: str) -> BodyRefused:
        return BodyRefused([FieldError(field="body", message=message)])

    if not raw.strip():
        raise refused("body is empty; a JSON object is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refused(
            f"body is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    if text.startswith("\ufeff"):
        raise refused("body starts with a byte order mark; JSON text must not")
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise refused(f"body is nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise refused(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _problems(document: Any) -> list[FieldError]:
    problems: list[FieldError] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack and len(problems) < MAX_PROBLEMS:
        value, path = stack.pop()
        problem = None
        if isinstance(value, _Refused):
            problem = value.reason
        elif isinstance(value, str):
            problem = lone_surrogate_problem(value)
        elif isinstance(value, dict | list):
            if len(path) >= MAX_DEPTH:
                problem = f"nested more than {MAX_DEPTH} levels deep"
            else:
                items = list(value.items() if isinstance(value, dict) else enumerate(value))
                for key, item in reversed(items):  # reported in document order
                    if isinstance(key, str):
                        key_problem = lone_surrogate_problem(key)
                        # Keys are echoed in field names: spelled so that any key can be.
                        key = key.encode("utf-8", "backslashreplace").decode()
                        if key_problem:
                            problems.append(
                                FieldError(field=field_name((*path, key)), message=f"key {key_problem}")
                            )
                    stack.append((item, (*path, key)))
        if problem:
            problems.append(FieldError(field=field_name(path), message=problem))
    return problems[:MAX_PROBLEMS]
