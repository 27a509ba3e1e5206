"""GET /ops: the ops page (api/ops.py), behind the ops key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import HTMLResponse

from ..deps import Services
from ..errors import error_responses
from ..ops import CONTENT_SECURITY_POLICY, WINDOWS, window_of
from ..service import unavailable
from ..temporal import TemporalUnavailable

router = APIRouter(tags=["operations"])


@router.get(
    "/ops",
    # Not `response_class=HTMLResponse`: FastAPI would then document the JSON errors as HTML.
    response_class=Response,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The page"},
        **error_responses(401, 403, 422, 503),
    },
    summary="The ops page: success, latency, cost and failures per scenario and model; what is in flight",
)
async def ops_page(
    services: Services,
    authorization: Annotated[
        str | None, Header(description="Bearer <OPS_API_KEY>, or Basic with it as password")
    ] = None,
    window: Annotated[str | None, Query(description=f"one of {', '.join(WINDOWS)}")] = None,
) -> HTMLResponse:
    # Basic, so a browser asks for the key itself (any user name, the key as password).
    services.ops_key.check(authorization, challenge='Basic realm="reliable-video ops", charset="UTF-8"')
    chosen = window_of(window)
    try:
        page = await services.ops.page(chosen)
    except TemporalUnavailable as exc:
        raise unavailable(exc) from exc
    return HTMLResponse(
        page,
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store"},
    )
