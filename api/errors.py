"""One error shape for every non-2xx answer, and the handlers that produce it.

`{"error": {"type": ..., "message": ..., "fields": [{"field": "prompt", "message": ...}]}}`:
a client can show `message`, and a form can put each `fields` entry next to its input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException


class FieldError(BaseModel):
    field: str = Field(description="The field, e.g. `prompt` or `image_urls[1]`.")
    message: str


class ErrorDetail(BaseModel):
    type: str = Field(description="Stable machine-readable kind, e.g. `validation_error`.")
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        type: str,
        message: str,
        *,
        fields: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.type = type
        self.message = message
        self.fields = list(fields)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = ErrorResponse(error=ErrorDetail(type=self.type, message=self.message, fields=self.fields))
        return JSONResponse(body.model_dump(mode="json"), status_code=self.status_code, headers=self.headers)


def invalid(fields: Sequence[FieldError]) -> ApiError:
    names = ", ".join(dict.fromkeys(f.field for f in fields))
    return ApiError(422, "validation_error", f"invalid request: {names}", fields=fields)


def field_name(loc: Iterable[Any]) -> str:
    """`("body", "image_urls", 1)` -> `image_urls[1]`; the transport part is dropped."""
    name = ""
    for part in loc:
        if part in ("body", "query", "path", "header") and not name:
            continue
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def fields_from_pydantic(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    fields: list[FieldError] = []
    for error in errors:
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        elif error.get("type") == "missing":
            message = "field required"
        fields.append(FieldError(field=field_name(error.get("loc", ())), message=message))
    return fields


_HTTP_TYPES = {
    400: "invalid_request",
    401: "authentication_error",
    402: "budget_exceeded",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    431: "request_headers_too_large",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}


def error_type(status_code: int) -> str:
    return _HTTP_TYPES.get(status_code, "error")


# For `responses=` on routes: what each status means here, with the one error model.
_DESCRIPTIONS = {
    400: "Malformed request (e.g. missing or invalid Idempotency-Key, a query string that is not "
    "UTF-8, an unparseable callback body)",
    401: "Missing or invalid credentials",
    402: "The tenant's credit budget cannot hold this generation; nothing was started. `error.budget` "
    "names the budget, its limit, spent, reserved and when it resets",
    403: "The route is switched off (its key is not configured)",
    404: "No such generation for this tenant",
    409: "Conflict with the generation's state or the key's earlier request",
    413: "Request body too large",
    415: "The body is not JSON (`Content-Type: application/json`, UTF-8)",
    431: "Request headers too large",
    422: "Invalid request (fields, or JSON that is not plain: too deep, huge numbers, duplicate keys, "
    "control characters); `error.fields` names each problem",
    429: "Rate limit exceeded; retry after `Retry-After` seconds",
    503: "Temporal is unreachable; retry later",
}


ERROR_DESCRIPTIONS = _DESCRIPTIONS


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _DESCRIPTIONS[code]}
        if code == 429:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        if code == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        responses[code] = entry
    return responses


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields = fields_from_pydantic(exc.errors())
        header_fields = [
            f for f, e in zip(fields, exc.errors(), strict=True) if tuple(e.get("loc", ()))[:1] == ("header",)
        ]
        if header_fields:
            # A missing or malformed header (Idempotency-Key) is a malformed request, not an
            # invalid body: 400, as the API promises for a missing key.
            names = ", ".join(f.field for f in header_fields)
            return ApiError(
                400, "invalid_request", f"missing or invalid header: {names}", fields=header_fields
            ).response()
        return invalid(fields).response()

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = error_type(exc.status_code)
        message = exc.detail if isinstance(exc.detail, str) else kind.replace("_", " ")
        return ApiError(exc.status_code, kind, message, headers=exc.headers).response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
