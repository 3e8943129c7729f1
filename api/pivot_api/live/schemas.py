"""What the live streams send (`/sse/training/{id}` and `/ws/training/{id}`), as models for
the OpenAPI document and the clients. The streams build plain dicts (pivot_api.live.endpoints);
these describe them, and the live tests check the two agree."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pivot_schema import SessionStatus

LOSS_DESCRIPTION = (
    "The loss the reference's examples print as `Loss`: the record's own `loss` if it has "
    "one, else the epoch's validation loss (`val_loss`), else, for an epoch without "
    "validation, its training loss (`train_loss`). Null when that value is not a finite "
    "number (a diverged loss is not replaced by another) or the record has none of them. "
    "The same value on the SSE and the WebSocket stream."
)
_EPOCH = "The epoch this record closes (1-based)."
_TIMESTAMP = "When the trainer wrote the record (UTC, ISO 8601)."


class LiveMetricsEvent(BaseModel):
    """The data of an SSE `metrics` event: one epoch record (`epoch`, `timestamp` and every
    metric side by side, as GET .../metrics returns it) plus `loss`."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "epoch": 25,
                    "timestamp": "2025-12-19T10:55:00Z",
                    "train_loss": 0.245,
                    "val_loss": 0.289,
                    "learning_rate": 0.000853,
                    "loss": 0.289,
                }
            ]
        },
    )

    epoch: int = Field(description=_EPOCH)
    timestamp: str | None = Field(default=None, description=_TIMESTAMP)
    loss: float | None = Field(description=LOSS_DESCRIPTION)


class LiveMetricsMessage(BaseModel):
    """A WebSocket `metrics` message: the reference's `{epoch, loss}` with the whole record
    under `metrics`. `id` is what `?since=` takes to resume after it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "metrics",
                    "id": "1734605700000-0_1734605640000-0",
                    "stream_id": "1734605700000-0",
                    "session_id": "sess-abc123",
                    "epoch": 25,
                    "loss": 0.289,
                    "timestamp": "2025-12-19T10:55:00Z",
                    "metrics": {"train_loss": 0.245, "val_loss": 0.289, "learning_rate": 0.000853},
                }
            ]
        }
    )

    type: Literal["metrics"]
    id: str = Field(description="The event id (SSE `id:`); `?since=` resumes after it.")
    stream_id: str = Field(description="The record's id in the session's metrics stream.")
    session_id: str
    epoch: int = Field(description=_EPOCH)
    loss: float | None = Field(description=LOSS_DESCRIPTION)
    timestamp: str | None = Field(default=None, description=_TIMESTAMP)
    metrics: dict[str, float | None] = Field(
        description="Every metric of the record (null: a non-finite value)."
    )


class LiveStatusEvent(BaseModel):
    """The data of an SSE `status` event (on the WebSocket the same fields with
    `type: "status"`). The stream ends after a final one (`completed`, `failed`,
    `stopped`) once the session the API serves has that status. The trainer's event fields
    (`epoch`, `error`...) come along."""

    model_config = ConfigDict(extra="allow")

    session_id: str
    status: SessionStatus
    event: str | None = Field(
        default=None, description="The trainer's event: started, completed, failed, stopped."
    )


class SessionDeletedEvent(BaseModel):
    """The data of a `deleted` event on /sse/sessions: the session is gone."""

    session_id: str


class SessionsReadyEvent(BaseModel):
    """The data of a `ready` event on /sse/sessions: the snapshot (or, on a resumed stream,
    the catch-up) is complete."""

    count: int = Field(description="Sessions sent before it (snapshot or catch-up).")


LIVE_MODELS: tuple[type[BaseModel], ...] = (
    LiveMetricsEvent,
    LiveMetricsMessage,
    LiveStatusEvent,
    SessionDeletedEvent,
    SessionsReadyEvent,
)
