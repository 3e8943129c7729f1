"""Bodies of the training session routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema

from pivot_api.schemas import NamePattern, absent_not_null
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
from pivot_schema.text import check_name

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


class BestCheckpointInfo(BaseModel):
    checkpoint_id: str
    epoch: int | None = None
    metric: str | None = Field(default=None, description="The metric that ranks checkpoints.")
    value: float | None = None


class SessionCondition(BaseModel):
    type: str
    status: str = Field(description="True, False or Unknown.")
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


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
    best_checkpoint: BestCheckpointInfo | None = Field(
        default=None, description="The checkpoint that ranks best so far (config.checkpoint)."
    )
    conditions: list[SessionCondition] = Field(
        default_factory=list, description="The CR's conditions (`kubectl describe ts`)."
    )


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


class EventObject(BaseModel):
    kind: str = Field(description="TrainingSession or Pod.")
    name: str


class SessionEvent(BaseModel):
    """A Kubernetes Event of the session or of one of its pods (`kubectl describe`)."""

    type: str = Field(description="Normal or Warning.")
    reason: str
    message: str
    count: int = Field(description="How many times it happened.")
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    source: str | None = Field(default=None, description="The component that reported it.")
    object: EventObject


class SessionEvents(BaseModel):
    session_id: str
    events: list[SessionEvent] = Field(description="Oldest first.")


class ConfigFile(BaseModel):
    """A training config in the API's configs directory."""

    config_path: str = Field(description="What `config_path` takes to create a session from it.")
    config: dict[str, Any] | None = Field(
        default=None, description="The config as validated; absent when it is not valid."
    )
    error: str | None = Field(
        default=None, description="Why the file cannot be used as it is; absent when valid."
    )


class ConfigList(BaseModel):
    configs: list[ConfigFile]
