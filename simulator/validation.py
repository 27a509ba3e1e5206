"""Create-request validation as the provider does it: every contract rule, each refusal a 400
`invalid_request_error` whose `param` names the field (docs/provider-contract.md, "Create request").

Unknown extra fields are ignored, as a tolerant gateway does; `null` counts as "not sent".
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from gptimage2 import (
    CALLBACK_URL_MAX,
    DURATION_DEFAULT,
    DURATION_MAX,
    DURATION_MIN,
    KNOWN_MODELS,
    MAX_IMAGE_BYTES,
    MAX_IMAGES,
    AspectRatio,
    CreateVideoRequest,
    Quality,
    is_private_host,
    prompt_problem,
)
from gptimage2.profiles import PROFILES, SEEDANCE, AudioWire, ImageWire, ModelProfile

from .callbacks import resolves_to_private
from .images import sniff_image

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large_error",
    429: "rate_limit_error",
    500: "internal_server_error",
    502: "upstream_error",
    503: "service_unavailable_error",
}
IMAGE_FETCH_TIMEOUT = 10.0
_E = TypeVar("_E", Quality, AspectRatio)


class ApiError(Exception):
    """An HTTP error answered with the contract's envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = dict(headers or {})

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "type": ERROR_TYPES.get(self.status, "api_error"),
                "param": self.param,
            }
        }


def invalid(param: str | None, message: str) -> ApiError:
    return ApiError(400, message, param=param)


def validate_fields(body: Any) -> CreateVideoRequest:
    """The checks that need no network, in the order a client would fix them."""
    if not isinstance(body, dict):
        raise invalid(None, "request body must be a JSON object")

    def given(name: str) -> Any:
        return body.get(name)

    model = given("model")
    if model is None:
        raise invalid("model", "model is required")
    if not isinstance(model, str) or model not in KNOWN_MODELS:
        raise invalid("model", f"unknown model; supported: {', '.join(KNOWN_MODELS)}")
    if model != SEEDANCE.id:
        return _validate_profiled(body, PROFILES[model])

    prompt = given("prompt")
    if prompt is None:
        raise invalid("prompt", "prompt is required")
    if not isinstance(prompt, str):
        raise invalid("prompt", "prompt must be a string")
    problem = prompt_problem(prompt)
    if problem:
        raise invalid("prompt", problem)

    duration = given("duration")
    if duration is None:
        duration = DURATION_DEFAULT
    # JSON has one number type: 5.0 and true are not integers here (bool is an int in Python).
    if type(duration) is not int:
        raise invalid("duration", "duration must be an integer number of seconds")
    if not DURATION_MIN <= duration <= DURATION_MAX:
        raise invalid("duration", f"duration must be between {DURATION_MIN} and {DURATION_MAX} seconds")

    quality = _choice(given("quality"), SEEDANCE.qualities, Quality.P720, "quality")
    aspect_ratio = _choice(given("aspect_ratio"), SEEDANCE.aspect_ratios, AspectRatio.WIDE, "aspect_ratio")

    audio = given("generate_audio")
    if audio is None:
        audio = True
    if not isinstance(audio, bool):
        raise invalid("generate_audio", "generate_audio must be a boolean")

    callback_url = given("callback_url")
    if callback_url is not None:
        _check_callback_url(callback_url)

    image_urls = given("image_urls")
    if image_urls is None:
        image_urls = []
    if not isinstance(image_urls, list):
        raise invalid("image_urls", "image_urls must be a list of URLs")
    if len(image_urls) > MAX_IMAGES:
        raise invalid("image_urls", f"at most {MAX_IMAGES} images per request")
    for index, url in enumerate(image_urls):
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid("image_urls", f"image_urls[{index}] must be an absolute http(s) URL")

    # Checked above, independently of the contract's own validators (the simulator stands in for
    # the provider, so it catches what our models get wrong): built without running those.
    return CreateVideoRequest.model_construct(
        model=model,
        prompt=prompt,
        duration=duration,
        quality=quality,
        aspect_ratio=aspect_ratio,
        generate_audio=audio,
        image_urls=image_urls,
        callback_url=callback_url,
    )


def _validate_profiled(body: dict[str, Any], profile: ModelProfile) -> CreateVideoRequest:
    """A model other than Seedance, by its profile's entry (the same table the client maps the
    request with): its wire fields read back to the neutral request and checked by the
    contract's rules, each refusal naming the wire field (`sound`, `image_start`, ...)."""
    sent = {key: value for key, value in body.items() if value is not None}
    if profile.audio is AudioWire.ON_OFF and sent.get("sound", "off") not in ("on", "off"):
        raise invalid("sound", "sound must be one of: on, off")
    if profile.images is ImageWire.START_END and "image_end" in sent and "image_start" not in sent:
        raise invalid("image_start", "image_end requires image_start")
    neutral, wire_names = profile.neutral_from_wire(sent)
    try:
        return CreateVideoRequest.model_validate(neutral)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise invalid(wire_names.get(name or "", name), message) from None


def _choice(value: Any, allowed: tuple[_E, ...], default: _E, param: str) -> _E:
    if value is None:
        return default
    for member in allowed:
        if value == member.value:
            return member
    listed = ", ".join(member.value for member in allowed)
    raise invalid(param, f"{param} must be one of: {listed}")


def _check_callback_url(url: Any) -> None:
    if not isinstance(url, str):
        raise invalid("callback_url", "callback_url must be a string")
    if len(url) > CALLBACK_URL_MAX:
        raise invalid("callback_url", f"callback_url is longer than {CALLBACK_URL_MAX} characters")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise invalid("callback_url", "callback_url must be an absolute HTTPS URL")


async def check_network_rules(
    params: CreateVideoRequest, http: httpx.AsyncClient, allow_private: bool
) -> None:
    """Host and image checks: private callback/image hosts refused (unless allowed), and each
    image fetched with a bounded GET, at most 10 MB, jpg/png/webp by its bytes."""
    if params.callback_url is not None and not allow_private:
        host = urlsplit(params.callback_url).hostname or ""
        if await resolves_to_private(host):
            raise invalid(
                "callback_url", "callback_url must not point to a private, loopback or link-local host"
            )
    for index, url in enumerate(params.image_urls):
        problem = await _image_problem(url, http, allow_private)
        if problem:
            raise invalid("image_urls", f"image_urls[{index}]: {problem}")


async def _image_problem(url: str, http: httpx.AsyncClient, allow_private: bool) -> str | None:
    host = urlsplit(url).hostname or ""
    if not allow_private and (is_private_host(host) or await resolves_to_private(host)):
        return "private, loopback and link-local hosts are not allowed"
    data = bytearray()
    try:
        async with asyncio.timeout(IMAGE_FETCH_TIMEOUT), http.stream("GET", url) as response:
            if response.status_code != 200:
                return f"not reachable (HTTP {response.status_code})"
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_IMAGE_BYTES:
                return "larger than 10 MB"
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:  # a lying or absent Content-Length
                    return "larger than 10 MB"
    except TimeoutError:
        return "not reachable (timed out)"
    except httpx.HTTPError as exc:
        return f"not reachable ({type(exc).__name__})"
    if sniff_image(bytes(data[:16])) is None:
        return "not a jpg, png or webp image"
    return None
