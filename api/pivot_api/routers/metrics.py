from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

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
    start_epoch: Annotated[Annotated[int, Field(ge=0)] | SkipJsonSchema[None], Query()] = None,
    end_epoch: Annotated[Annotated[int, Field(ge=0)] | SkipJsonSchema[None], Query()] = None,
    max_points: Annotated[
        Annotated[int, Field(ge=2, le=100_000)] | SkipJsonSchema[None],
        Query(
            description="Reduce a longer series to at most this many points that keep its "
            "shape (first, last, and each bucket's min and max). Deterministic.",
        ),
    ] = None,
) -> MetricHistory:
    """One metric's values by epoch, optionally within [start_epoch, end_epoch]."""
    return await metrics.history(
        session_id,
        metric_name=metric_name,
        start_epoch=start_epoch,
        end_epoch=end_epoch,
        max_points=max_points,
    )
