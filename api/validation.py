"""Validation of `POST /v1/generations` bodies: the contract's rules plus ours, every bad
field named in one answer.

Image URLs are checked in two steps: first by their text (scheme, credentials, IP literals in
any spelling, local names: no I/O), then over the network through `netguard` (DNS answers,
each redirect hop, size and magic bytes), so the provider gets only images it will accept
and a URL can never make us fetch from inside our own network.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from gptimage2 import MAX_IMAGE_BYTES, MAX_IMAGES_ANY_MODEL
from netguard import GuardedClient, NetguardError, probe_image
from workflows.presets import images_problem

from .errors import FieldError, fields_from_pydantic, invalid
from .jsonbody import BodyRefused, parse_json_object
from .schemas import CreateGenerationRequest


class ImageChecker:
    def __init__(self, client: GuardedClient, *, timeout: float, max_bytes: int = MAX_IMAGE_BYTES) -> None:
        self.client = client
        self.timeout = timeout
        self.max_bytes = max_bytes

    def static_problem(self, url: str) -> str | None:
        try:
            self.client.check(url)
        except NetguardError as exc:
            return exc.reason
        return None

    async def network_problem(self, url: str) -> str | None:
        try:
            await probe_image(self.client, url, max_bytes=self.max_bytes, within_seconds=self.timeout)
        except NetguardError as exc:
            return exc.reason
        return None


async def parse_create_request(
    raw: bytes, content_type: str | None, images: ImageChecker
) -> CreateGenerationRequest:
    """The request, or an ApiError: 415 for a body that is not JSON, else 422 listing each bad
    field."""
    try:
        data = parse_json_object(raw, content_type)
    except BodyRefused as exc:
        raise exc.api_error(malformed=422) from None

    errors: list[FieldError] = []
    request: CreateGenerationRequest | None = None
    try:
        request = CreateGenerationRequest.model_validate(data)
    except ValidationError as exc:
        errors = fields_from_pydantic(exc.errors())

    # Image URLs are checked even when other fields are bad, so one answer names every
    # problem; URLs that already failed their type or length check are not fetched.
    urls = data.get("image_urls")
    if isinstance(urls, list) and len(urls) <= MAX_IMAGES_ANY_MODEL:
        flagged = {error.field for error in errors}
        candidates = {
            f"image_urls[{index}]": url
            for index, url in enumerate(urls)
            if isinstance(url, str) and f"image_urls[{index}]" not in flagged
        }
        problems = {field: images.static_problem(url) for field, url in candidates.items()}
        to_fetch = [field for field, problem in problems.items() if problem is None]
        found = await asyncio.gather(*(images.network_problem(candidates[field]) for field in to_fetch))
        problems.update(zip(to_fetch, found, strict=True))
        errors += [FieldError(field=field, message=problem) for field, problem in problems.items() if problem]

    if request is not None:
        problem = images_problem(request.scenario, len(request.image_urls))
        if problem:
            errors.append(FieldError(field="image_urls", message=problem))
    if errors or request is None:
        raise invalid(errors)
    return request
