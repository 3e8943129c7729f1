from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from pivot_api.deps import Metrics
from pivot_api.metrics.schemas import MetricHistory, StepHistory
from pivot_api.schemas import ErrorResponse

NonNegative = Annotated[int, Field(ge=0)] | SkipJsonSchema[None]
MaxPoints = Annotated[
    Annotated[int, Field(ge=2, le=100_000)] | SkipJsonSchema[None],
    Query(
        description="Reduce a longer series to at most this many points that keep its "
        "shape (first, last, and each bucket's min and max). Deterministic.",
    ),
]

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
    start_epoch: Annotated[NonNegative, Query()] = None,
    end_epoch: Annotated[NonNegative, Query()] = None,
    max_points: MaxPoints = None,
) -> MetricHistory:
    """One metric's values by epoch, optionally within [start_epoch, end_epoch]."""
    return await metrics.history(
        session_id,
        metric_name=metric_name,
        start_epoch=start_epoch,
        end_epoch=end_epoch,
        max_points=max_points,
    )


@router.get(
    "/{session_id}/steps",
    response_model=StepHistory,
    responses={404: {"model": ErrorResponse, "description": "No such session"}},
)
async def step_history(
    session_id: str,
    metrics: Metrics,
    metric_name: Annotated[str, Query(min_length=1)] = "train_loss",
    start_step: Annotated[NonNegative, Query(description="First global step (inclusive).")] = None,
    end_step: Annotated[NonNegative, Query(description="Last global step (inclusive).")] = None,
    max_points: MaxPoints = None,
) -> StepHistory:
    """A step-level metric (the trainer writes `train_loss` every few optimizer steps) by
    global step, optionally within [start_step, end_step]."""
    return await metrics.step_history(
        session_id,
        metric_name=metric_name,
        start_step=start_step,
        end_step=end_step,
        max_points=max_points,
    )
