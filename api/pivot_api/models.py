"""Request and response bodies, field for field as the API reference gives them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue, WithJsonSchema
from pydantic_core import CoreSchema

from pivot_schema import SessionStatus
from pivot_schema.config import config_json_schema
from pivot_schema.crd import (
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    LabelKey,
    LabelValue,
    NonNegative,
    Positive,
    Quantity,
    WholeNumber,
)
from pivot_schema.text import check_name, name_pattern


class NamePattern:
    """Documents `check_name` in the schema: no control or format characters."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = name_pattern()
        return schema


# Names people read: no control or format characters (Unicode Cc, Cf), documented as such.
Tag = Annotated[
    str, StringConstraints(min_length=1, max_length=63), AfterValidator(check_name), NamePattern()
]
SessionName = Annotated[
    str, StringConstraints(max_length=253), AfterValidator(check_name), NamePattern()
]

# An inline config is documented with the rules it is validated against: the trainer's own
# (pivot_schema.config), which the CRD states too.
_CONFIG_SCHEMA: dict[str, Any] = config_json_schema()


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody


def absent_not_null(schema: dict[str, Any]) -> None:
    """Document optional fields as absent-or-valued, not nullable: `{"config_path": null}`
    is not a request anyone should send, and a null is what fuzzers try first."""
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            del prop["anyOf"]
            if len(rest) == 1:
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest
            if prop.get("default", 0) is None:
                del prop["default"]


def _one_config_source(schema: dict[str, Any]) -> None:
    absent_not_null(schema)
    # The validator's rule, in the schema: exactly one config source.
    schema["oneOf"] = [{"required": ["config_path"]}, {"required": ["config"]}]


class ResourceRequest(BaseModel):
    """What every trainer pod gets (the CR's spec.resources, as the CRD validates it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=absent_not_null)

    gpu: NonNegative | None = Field(
        default=None, description="GPUs per pod (nvidia.com/gpu); a GPU node is needed."
    )
    cpu: Quantity | None = Field(
        default=None, description='CPU request and limit: a quantity, e.g. 4 or "500m".'
    )
    memory: Quantity | None = Field(
        default=None, description='Memory request and limit: a quantity, e.g. "16Gi".'
    )


# Label keys to label values; documented with propertyNames (pydantic would say
# patternProperties, which lets any other key through).
NodeSelector = Annotated[
    dict[LabelKey, LabelValue],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"maxLength": 317, "pattern": LABEL_KEY_PATTERN},
            "additionalProperties": {
                "type": "string",
                "maxLength": 63,
                "pattern": LABEL_VALUE_PATTERN,
            },
        }
    ),
]


def _toleration_rules(schema: dict[str, Any]) -> None:
    """The rules Kubernetes checks across a toleration's fields, stated in the schema."""
    absent_not_null(schema)
    exists = {"properties": {"operator": {"const": "Exists"}}, "required": ["operator"]}
    schema["allOf"] = [
        # Without a key it matches every taint: operator Exists.
        {"anyOf": [{"required": ["key"]}, exists]},
        # Exists matches any value: none is given.
        {"anyOf": [{"not": exists}, {"not": {"required": ["value"]}}]},
        # toleration_seconds is how long a NoExecute taint is tolerated.
        {
            "anyOf": [
                {"not": {"required": ["toleration_seconds"]}},
                {"properties": {"effect": {"const": "NoExecute"}}, "required": ["effect"]},
            ]
        },
    ]


class TolerationRequest(BaseModel):
    """A core/v1 Toleration, snake_case (the CR's spec.tolerations[])."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_toleration_rules)

    key: LabelKey | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: WholeNumber | None = None

    @model_validator(mode="after")
    def _as_kubernetes_checks_it(self) -> TolerationRequest:
        # What pod validation would refuse later, when the operator makes the pods.
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator Exists takes no value")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key needs operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("toleration_seconds needs effect NoExecute")
        return self


class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_config_source)

    config_path: str | None = Field(
        default=None, min_length=1, description="A YAML file inside the server's configs dir."
    )
    config: Annotated[dict[str, Any], WithJsonSchema(_CONFIG_SCHEMA)] | None = Field(
        default=None, description="An inline training config."
    )
    session_name: SessionName | None = None
    tags: list[Tag] | None = Field(default=None, max_length=64)
    # Where and on what it runs: the CR's resources, nodeSelector, tolerations and replicas.
    resources: ResourceRequest | None = None
    node_selector: NodeSelector | None = Field(
        default=None, description="Labels a node must have (the pods' nodeSelector)."
    )
    tolerations: list[TolerationRequest] | None = Field(default=None, max_length=64)
    replicas: Positive | None = Field(
        default=None,
        description="Pods of a distributed session (torchrun's nodes), each with `resources`.",
    )

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


ComponentState = Literal["healthy", "unhealthy"]


class SystemStats(BaseModel):
    cpu_percent: float
    memory_percent: float
    disk_percent: float


class Components(BaseModel):
    database: ComponentState
    filesystem: ComponentState
    kubernetes: ComponentState
    # From heartbeat Leases: the operator's in its namespace, the nodes' in kube-node-lease
    # (healthy while at least one is fresh).
    operator: ComponentState
    kubelet: ComponentState


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded"]
    timestamp: str
    uptime_seconds: float
    system: SystemStats
    components: Components


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


class MessageResponse(BaseModel):
    message: str


class CpuStats(BaseModel):
    percent: float
    count: int
    per_cpu: list[float]


class UsageStats(BaseModel):
    percent: float
    used_gb: float
    total_gb: float


class GpuStats(BaseModel):
    id: int
    name: str
    memory_percent: float
    memory_used_gb: float
    memory_total_gb: float
    utilization: float | None = None
    temperature: float | None = None


class TrainerGpu(BaseModel):
    """One GPU as a trainer's telemetry reports it (null where the driver reports nothing)."""

    index: int
    name: str
    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    memory_percent: float | None = None
    temperature_c: float | None = None
    power_watts: float | None = None


class GpuSample(BaseModel):
    timestamp: str | None = None
    gpus: list[TrainerGpu]


class SessionGpuTelemetry(BaseModel):
    """A running session's latest GPU sample, from its trainer (every few seconds)."""

    session_id: str
    session_name: str | None = None
    timestamp: str | None = None
    age_seconds: float | None = None
    gpus: list[TrainerGpu]


class SessionGpuHistory(BaseModel):
    session_id: str
    samples: list[GpuSample]


class ResourcesResponse(BaseModel):
    timestamp: str
    cpu: CpuStats
    memory: UsageStats
    disk: UsageStats
    gpu: list[GpuStats]
    # Beyond the reference: the trainers' GPUs, one entry per running session that reports.
    sessions: list[SessionGpuTelemetry] = Field(default_factory=list)


# -- webhooks ---------------------------------------------------------------------------------

# The event types a webhook may subscribe to (pivot_api.services.platform_events), or "*".
WebhookEvent = Literal[
    "training_started",
    "training_completed",
    "training_failed",
    "training_stopped",
    "training_preempted",
    "training_resumed",
    "alert_triggered",
    "alert_resolved",
    "system_event",
    "*",
]
WebhookStatus = Literal["active", "disabled"]


def _drop_null(schema: dict[str, Any]) -> None:
    """Optional request fields are absent-or-valued, not nullable (as for sessions)."""
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            del prop["anyOf"]
            prop.update(rest[0])
            prop.pop("default", None)


class CreateWebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_drop_null)

    url: str = Field(
        min_length=8,
        max_length=2048,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://",
        description="Where events are POSTed: http(s), not to a loopback, link-local, "
        "private or metadata address unless the server's allowlist permits it.",
    )
    events: list[WebhookEvent] = Field(min_length=1, max_length=16)
    secret: str | None = Field(
        default=None,
        min_length=8,
        max_length=256,
        description="Signing secret: whsec_<base64> (Standard Webhooks) or any string, used "
        "as its UTF-8 bytes. Omitted: one is generated and returned once.",
    )


class UpdateWebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: WebhookStatus


class Webhook(BaseModel):
    webhook_id: str
    url: str
    events: list[str]
    created_at: str
    status: WebhookStatus
    # Why a disabled webhook was disabled (a user, or a receiver's 410 Gone).
    disabled_reason: str | None = None


class WebhookCreated(Webhook):
    # The generated secret, shown this once (null when the request gave one).
    secret: str | None = None


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class WebhookTestResult(BaseModel):
    success: bool
    status_code: int | None = None
    response_time_ms: float
    error: str | None = None


class WebhookDelivery(BaseModel):
    event_id: str
    type: str
    attempt: int
    # delivered | retrying | dead_lettered | disabled (the receiver said 410) | test
    outcome: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: float
    attempted_at: str
    next_attempt_at: str | None = None


class WebhookDeliveryList(BaseModel):
    webhook_id: str
    # Events waiting in the outbox (the head is being delivered or retried).
    pending: int
    deliveries: list[WebhookDelivery]


class WebhookDeadLetter(BaseModel):
    event_id: str
    type: str
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    dead_lettered_at: str


class WebhookDeadLetterList(BaseModel):
    webhook_id: str
    dead_letters: list[WebhookDeadLetter]


class WebhookRedelivered(BaseModel):
    webhook_id: str
    redelivered: int
