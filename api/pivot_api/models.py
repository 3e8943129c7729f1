"""Request and response bodies, field for field as the API reference gives them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from pivot_schema import SessionStatus

Tag = Annotated[str, StringConstraints(min_length=1, max_length=63)]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody


class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config_path: str | None = Field(
        default=None, min_length=1, description="A YAML file inside the server's configs dir."
    )
    config: dict[str, Any] | None = Field(default=None, description="An inline training config.")
    session_name: str | None = Field(default=None, max_length=253)
    tags: list[Tag] | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _one_config_source(self) -> CreateSessionRequest:
        if (self.config_path is None) == (self.config is None):
            raise ValueError("give exactly one of config_path and config")
        return self


class CreateSessionResponse(BaseModel):
    session_id: str
    status: SessionStatus
    created_at: str
    config: dict[str, Any]


class StartSessionResponse(BaseModel):
    session_id: str
    status: Literal["running"]
    started_at: str


class StopSessionResponse(BaseModel):
    session_id: str
    status: Literal["stopped"]
    stopped_at: str


class SessionDetail(BaseModel):
    session_id: str
    session_name: str | None = None
    status: SessionStatus
    config: dict[str, Any]
    tags: list[str] = Field(default_factory=list)
    created_at: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    completed_at: str | None = None
    current_epoch: int = 0
    total_epochs: int
    progress: float = 0.0
    latest_metrics: dict[str, float] = Field(default_factory=dict)
    message: str | None = None


class SessionSummary(BaseModel):
    session_id: str
    session_name: str | None = None
    status: SessionStatus
    created_at: str | None = None
    current_epoch: int = 0
    total_epochs: int
    tags: list[str] = Field(default_factory=list)


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    total: int
    limit: int
    offset: int


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


ComponentState = Literal["healthy", "unhealthy"]


class SystemStats(BaseModel):
    cpu_percent: float
    memory_percent: float
    disk_percent: float


class Components(BaseModel):
    database: ComponentState
    filesystem: ComponentState
    kubernetes: ComponentState


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded"]
    timestamp: str
    uptime_seconds: float
    system: SystemStats
    components: Components
