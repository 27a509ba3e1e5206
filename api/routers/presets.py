from __future__ import annotations

from fastapi import APIRouter, Depends

from workflows.presets import PRESETS

from ..deps import rate_limited_tenant
from ..errors import error_responses
from ..schemas import PresetList

router = APIRouter(
    prefix="/v1/presets",
    tags=["presets"],
    dependencies=[Depends(rate_limited_tenant)],
    responses=error_responses(400, 401, 413, 429, 431),
)


@router.get("", response_model=PresetList, summary="Scenario presets: the defaults `scenario` fills in")
async def list_presets() -> PresetList:
    return PresetList(data=list(PRESETS.values()))
