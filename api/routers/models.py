from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from gptimage2 import PROFILES

from ..deps import rate_limited_tenant
from ..errors import error_responses

router = APIRouter(
    prefix="/v1/models",
    tags=["models"],
    dependencies=[Depends(rate_limited_tenant)],
    responses=error_responses(400, 401, 413, 429, 431, 503),
)


class ModelList(BaseModel):
    """The video models a generation may use, each with its allowed values and defaults (from
    `gptimage2.profiles`, the table the API validates against), so a UI can build its form."""

    models: list[dict[str, Any]]


@router.get("", response_model=ModelList, summary="The video models and each one's rules")
async def list_models() -> ModelList:
    return ModelList(models=[profile.describe() for profile in PROFILES.values()])
