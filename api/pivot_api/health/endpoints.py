from __future__ import annotations

from fastapi import APIRouter

from pivot_api.deps import Health
from pivot_api.health.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health(service: Health) -> HealthResponse:
    """Always 200 while the process serves; `status` says whether every component answers."""
    return await service.report()
