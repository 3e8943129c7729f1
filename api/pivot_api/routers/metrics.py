from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from pivot_api.deps import Metrics
from pivot_api.models import ErrorResponse, MetricHistory

router = APIRouter(
    prefix="/metrics",
    tags=["metrics"],
    responses={422: {"model": ErrorResponse, "description": "Validation error"}},
)


@router.get(
    "/{session_id}/history",
    response_model=MetricHistory,
    responses={404: {"model": ErrorResponse, "description": "No such session"}},
)
async def metric_history(
    session_id: str,
    metrics: Metrics,
    metric_name: Annotated[str, Query(min_length=1)] = "val_loss",
    start_epoch: Annotated[int | None, Query(ge=0)] = None,
    end_epoch: Annotated[int | None, Query(ge=0)] = None,
) -> MetricHistory:
    """One metric's values by epoch, optionally within [start_epoch, end_epoch]."""
    return await metrics.history(
        session_id, metric_name=metric_name, start_epoch=start_epoch, end_epoch=end_epoch
    )
