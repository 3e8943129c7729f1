"""Bodies of the metric routes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MetricRecord(BaseModel):
    """One epoch record: epoch, timestamp and the metric values side by side."""

    model_config = ConfigDict(extra="allow")

    epoch: int
    timestamp: str | None = None


class SessionMetrics(BaseModel):
    session_id: str
    metrics: list[MetricRecord]


class MetricHistory(BaseModel):
    metric_name: str
    values: list[float | None]
    epochs: list[int]
    timestamps: list[str | None]
    # Points in the range before downsampling, and whether `max_points` reduced them.
    total_points: int
    downsampled: bool = False


class StepHistory(BaseModel):
    """One step-level metric (the trainer's `train_loss` every N optimizer steps) as parallel
    lists ordered by global step; `epochs` gives the epoch each step belongs to."""

    metric_name: str
    values: list[float | None]
    steps: list[int]
    epochs: list[int]
    timestamps: list[str | None]
    total_points: int
    downsampled: bool = False
