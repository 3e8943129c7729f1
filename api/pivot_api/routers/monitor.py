from __future__ import annotations

from fastapi import APIRouter

from pivot_api.deps import Resources
from pivot_api.models import ResourcesResponse

router = APIRouter(prefix="/monitor", tags=["monitoring"])


@router.get("/resources", response_model=ResourcesResponse)
async def resources(service: Resources) -> ResourcesResponse:
    """CPU (overall and per core), memory, disk and GPUs of the host this API runs on."""
    return await service.report()
