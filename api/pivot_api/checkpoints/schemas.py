"""Bodies of the checkpoint routes."""

from __future__ import annotations

from pydantic import BaseModel


class Checkpoint(BaseModel):
    checkpoint_id: str
    session_id: str
    epoch: int
    metric_name: str | None = None
    # None for a checkpoint without the session's metric (e.g. one taken mid-epoch).
    metric_value: float | None = None
    file_size_mb: float
    file_path: str
    is_best: bool
    created_at: str
    sha256: str
    step: int = 0


class CheckpointList(BaseModel):
    checkpoints: list[Checkpoint]


class CheckpointUploaded(BaseModel):
    checkpoint_id: str
    file_size_mb: float
    uploaded_at: str
