from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from pivot_api.deps import Resources
from pivot_api.monitor.schemas import ResourcesResponse, SessionGpuHistory
from pivot_api.schemas import ErrorResponse
from pivot_schema import keys

router = APIRouter(prefix="/monitor", tags=["monitoring"])


@router.get("/resources", response_model=ResourcesResponse)
async def resources(service: Resources) -> ResourcesResponse:
    """CPU (overall and per core), memory, disk and GPUs of the host this API runs on; and
    in `sessions`, the latest GPU telemetry of each running session's trainer."""
    return await service.report()


@router.get(
    "/sessions/{session_id}/gpu",
    response_model=SessionGpuHistory,
    responses={
        404: {"model": ErrorResponse, "description": "No such session"},
        422: {"model": ErrorResponse, "description": "Validation error"},
    },
)
async def session_gpu(
    session_id: str,
    service: Resources,
    limit: Annotated[int, Query(ge=1, le=keys.GPU_MAXLEN)] = 60,
) -> SessionGpuHistory:
    """The session trainer's latest `limit` GPU telemetry samples, oldest first (one every
    few seconds; empty for a CPU run)."""
    return await service.session_gpu_history(session_id, limit=limit)
