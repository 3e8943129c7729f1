"""Typed answers of the API. The models are generated from the server's OpenAPI document
(pivot_client._generated.models, `python -m pivot_client._codegen generate`); this module
gives them the SDK's public names and adds the types only a client has: the arguments it
takes and the live events it decodes. Every model also reads like the JSON it came from
(`session["session_id"]`, `"val_loss" in record`); unknown fields are kept (see PIVOTModel)."""

from __future__ import annotations

from typing import Any, Literal, Required, TypedDict

from pydantic import Field

from pivot_client._generated import models as _models

# Every generated model under its schema's name: Alert, Checkpoint, SessionSummary, Webhook...
from pivot_client._generated.models import *  # noqa: F403
from pivot_client._model import FINAL_STATUSES as FINAL_STATUSES  # re-exported
from pivot_client._model import PIVOTModel

# The SDK's names for the schemas whose OpenAPI names say what they answer.
CreatedSession = _models.CreateSessionResponse
StartedSession = _models.StartSessionResponse
StoppedSession = _models.StopSessionResponse
Session = _models.SessionDetail
SessionPage = _models.SessionList
UploadedCheckpoint = _models.CheckpointUploaded
Message = _models.MessageResponse
Resources = _models.ResourcesResponse
Health = _models.HealthResponse

SessionStatus = Literal["created", "pending", "running", "stopped", "completed", "failed"]


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


class AlertRuleSpec(TypedDict, total=False):
    """An alert rule's fields, as `alerts.replace_rule` takes them (see `create_rule`)."""

    name: Required[str]
    metric: Required[str]
    condition: Required[str]
    threshold: float | None
    severity: str
    enabled: bool
    session_id: str | None
    tag: str | None
    for_epochs: int | None
    mode: str | None
    window_s: float | None
    action: str | None


class DeploySpec(TypedDict, total=False):
    """What `models.deploy` and `deploy_model` take besides the server's name: a session's
    checkpoint (`best`, `latest` or an id) or an S3 file (`uri`) with its SHA-256; the pods
    (`replicas`, `resources`, `node_selector`, `tolerations`); request batching
    (`max_batch_size`, `max_delay_ms`); the candidates' `threshold`; `compile` (torch.compile
    on the server's device)."""

    session_id: str | None
    checkpoint: str | None
    uri: str | None
    sha256: str | None
    replicas: int
    max_batch_size: int | None
    max_delay_ms: float | None
    threshold: float | None
    compile: bool | None
    resources: ResourceSpec | None
    node_selector: dict[str, str] | None
    tolerations: list[TolerationSpec] | None


class LiveMetrics(_models.MetricRecord):
    """One epoch record from a live stream (`stream_metrics`): a MetricRecord plus `loss`,
    the value the reference's examples print as "Loss" (the server's LiveMetricsEvent).
    Optional here, so a record from an older server still decodes; `values` are the metrics
    without it."""

    loss: float | None = None


class LiveEvent(PIVOTModel):
    """One Server-Sent Event of a training stream, as the client saw it."""

    event: str
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
