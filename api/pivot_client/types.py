"""Typed answers of the API. Every model also reads like the JSON it came from
(`session["session_id"]`, `"val_loss" in record`), so code written against plain dicts, like
the reference's examples, runs unchanged. Unknown fields are kept, not dropped, so a newer
server never breaks an older client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

SessionStatus = Literal["created", "pending", "running", "stopped", "completed", "failed"]
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "stopped"})


class ResourceSpec(TypedDict, total=False):
    """What every trainer pod of a session gets: GPUs (nvidia.com/gpu) and CPU and memory as
    Kubernetes quantities (`4`, `"500m"`, `"16Gi"`)."""

    gpu: int
    cpu: int | str
    memory: int | str


class TolerationSpec(TypedDict, total=False):
    """A Kubernetes toleration, snake_case (`toleration_seconds`)."""

    key: str
    operator: Literal["Exists", "Equal"]
    value: str
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    toleration_seconds: int


class PIVOTModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def _as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.model_extra or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in type(self).model_fields or key in (self.model_extra or {})
        )

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> list[str]:
        return [*type(self).model_fields, *(self.model_extra or {})]

    def to_dict(self) -> dict[str, Any]:
        """The JSON the server sent (plus defaults), for printing or `json.dumps`."""
        return self._as_dict()


class CreatedSession(PIVOTModel):
    session_id: str
    status: str
    created_at: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class StartedSession(PIVOTModel):
    session_id: str
    status: str
    started_at: str | None = None


class StoppedSession(PIVOTModel):
    session_id: str
    status: str
    stopped_at: str | None = None


class Session(PIVOTModel):
    session_id: str
    session_name: str | None = None
    status: str
    config: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    created_at: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    completed_at: str | None = None
    current_epoch: int = 0
    total_epochs: int = 0
    progress: float = 0.0
    latest_metrics: dict[str, float] = Field(default_factory=dict)
    message: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


class SessionSummary(PIVOTModel):
    session_id: str
    session_name: str | None = None
    status: str
    created_at: str | None = None
    current_epoch: int = 0
    total_epochs: int = 0
    tags: list[str] = Field(default_factory=list)


class SessionPage(PIVOTModel):
    sessions: list[SessionSummary]
    total: int
    limit: int
    offset: int


class MetricRecord(PIVOTModel):
    """One epoch: `epoch`, `timestamp` and the metric values as extra keys."""

    epoch: int
    timestamp: str | None = None

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LiveMetrics(MetricRecord):
    """One epoch record from a live stream (`stream_metrics`): a MetricRecord plus `loss`,
    the value the reference's examples print as "Loss": the record's own `loss` if it has
    one, else `val_loss`, else (an epoch without validation) `train_loss`; None when that
    value is not finite. `values` are the metrics without it."""

    loss: float | None = None


class SessionMetrics(PIVOTModel):
    session_id: str
    metrics: list[MetricRecord]

    def __iter__(self) -> Iterator[MetricRecord]:  # type: ignore[override]
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)


class MetricHistory(PIVOTModel):
    metric_name: str
    values: list[float | None]
    epochs: list[int]
    timestamps: list[str | None]


class StepHistory(PIVOTModel):
    """A step-level metric by global step (`epochs`: the epoch of each point)."""

    metric_name: str
    values: list[float | None]
    steps: list[int]
    epochs: list[int]
    timestamps: list[str | None]
    total_points: int = 0
    downsampled: bool = False


class GpuSample(PIVOTModel):
    timestamp: str | None = None
    gpus: list[dict[str, Any]] = Field(default_factory=list)


class SessionGpuHistory(PIVOTModel):
    session_id: str
    samples: list[GpuSample] = Field(default_factory=list)


class Checkpoint(PIVOTModel):
    checkpoint_id: str
    session_id: str
    epoch: int
    metric_name: str | None = None
    metric_value: float | None = None
    file_size_mb: float = 0.0
    file_path: str | None = None
    is_best: bool = False
    created_at: str | None = None
    sha256: str | None = None


class CheckpointList(PIVOTModel):
    checkpoints: list[Checkpoint]

    def __iter__(self) -> Iterator[Checkpoint]:  # type: ignore[override]
        return iter(self.checkpoints)

    def __len__(self) -> int:
        return len(self.checkpoints)


class UploadedCheckpoint(PIVOTModel):
    checkpoint_id: str
    file_size_mb: float
    uploaded_at: str | None = None


class Message(PIVOTModel):
    message: str = ""


class Alert(PIVOTModel):
    alert_id: str
    rule_name: str | None = None
    severity: str | None = None
    message: str | None = None
    value: float | None = None
    threshold: float | None = None
    triggered_at: str | None = None
    acknowledged_at: str | None = None
    resolved_at: str | None = None
    status: str | None = None
    rule_id: str | None = None
    metric: str | None = None
    condition: str | None = None
    subject: str | None = None
    session_id: str | None = None
    acknowledged_by: str | None = None
    notes: str | None = None
    resolved_by: str | None = None


class AlertList(PIVOTModel):
    alerts: list[Alert]

    def __iter__(self) -> Iterator[Alert]:  # type: ignore[override]
        return iter(self.alerts)


class AlertRule(PIVOTModel):
    rule_id: str
    name: str
    metric: str
    condition: str
    threshold: float | None = None
    severity: str
    enabled: bool = True
    session_id: str | None = None
    tag: str | None = None
    for_epochs: int | None = None
    mode: str | None = None
    window_s: float | None = None
    action: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class AlertRuleList(PIVOTModel):
    rules: list[AlertRule]

    def __iter__(self) -> Iterator[AlertRule]:  # type: ignore[override]
        return iter(self.rules)


class Webhook(PIVOTModel):
    webhook_id: str
    url: str
    events: list[str] = Field(default_factory=list)
    created_at: str | None = None
    status: str | None = None
    disabled_reason: str | None = None
    # Only in the create response, and only when the server generated the secret.
    secret: str | None = None


class WebhookList(PIVOTModel):
    webhooks: list[Webhook]

    def __iter__(self) -> Iterator[Webhook]:  # type: ignore[override]
        return iter(self.webhooks)


class WebhookTestResult(PIVOTModel):
    success: bool
    status_code: int | None = None
    response_time_ms: float | None = None
    error: str | None = None


class WebhookDelivery(PIVOTModel):
    event_id: str
    type: str
    attempt: int
    outcome: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None
    attempted_at: str | None = None
    next_attempt_at: str | None = None


class WebhookDeliveryList(PIVOTModel):
    webhook_id: str
    pending: int = 0
    deliveries: list[WebhookDelivery]

    def __iter__(self) -> Iterator[WebhookDelivery]:  # type: ignore[override]
        return iter(self.deliveries)


class WebhookDeadLetter(PIVOTModel):
    event_id: str
    type: str
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    dead_lettered_at: str | None = None


class WebhookDeadLetterList(PIVOTModel):
    webhook_id: str
    dead_letters: list[WebhookDeadLetter]

    def __iter__(self) -> Iterator[WebhookDeadLetter]:  # type: ignore[override]
        return iter(self.dead_letters)


class WebhookRedelivered(PIVOTModel):
    webhook_id: str
    redelivered: int


class Notification(PIVOTModel):
    id: str
    type: str | None = None
    priority: str | None = None
    message: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    read: bool = False
    created_at: str | None = None
    event_type: str | None = None


class NotificationList(PIVOTModel):
    notifications: list[Notification]
    unread_count: int | None = None

    def __iter__(self) -> Iterator[Notification]:  # type: ignore[override]
        return iter(self.notifications)


class Resources(PIVOTModel):
    timestamp: str | None = None
    cpu: dict[str, Any] = Field(default_factory=dict)
    memory: dict[str, Any] = Field(default_factory=dict)
    disk: dict[str, Any] = Field(default_factory=dict)
    gpu: list[dict[str, Any]] = Field(default_factory=list)
    # Each running session's latest trainer GPU sample.
    sessions: list[dict[str, Any]] = Field(default_factory=list)


class Health(PIVOTModel):
    status: str
    timestamp: str | None = None
    uptime_seconds: float | None = None
    system: dict[str, Any] = Field(default_factory=dict)
    components: dict[str, str] = Field(default_factory=dict)


class LiveEvent(PIVOTModel):
    """One Server-Sent Event of a training stream, as the client saw it."""

    event: str
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
