"""The TrainingSession custom resource as typed models.

`crds/trainingsessions.pivot.dev.yaml` is canonical; these models mirror it field for field
(checked by tests/unit/test_crd_schema.py). Field names are snake_case in Python and
camelCase on the wire (`model_dump(by_alias=True)`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StringConstraints,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import WithJsonSchema

from pivot_schema.config import ConfigError, check_config, config_json_schema

GROUP = "pivot.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingSession"
PLURAL = "trainingsessions"
SINGULAR = "trainingsession"
SHORT_NAME = "ts"
CRD_NAME = f"{PLURAL}.{GROUP}"

# Labels the operator puts on everything it creates for a session.
LABEL_SESSION = "pivot.dev/session"
LABEL_COMPONENT = "pivot.dev/component"
COMPONENT_TRAINER = "trainer"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "pivot-operator"

# When the user last asked a session to run / to stop (ISO-8601 UTC), written by the API with
# spec.suspend in one patch. They make the answer of a start or stop the state every later
# read shows: a session stopped before the operator ever saw it run reads `stopped` with that
# `stopped_at`, not `created`; the operator carries the times into status.
ANNOTATION_STARTED_AT = "pivot.dev/started-at"
ANNOTATION_STOPPED_AT = "pivot.dev/stopped-at"


class _CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Phase(StrEnum):
    """CR phase: a summary of the conditions, written only by the operator."""

    CREATED = "Created"
    PENDING = "Pending"
    RUNNING = "Running"
    STOPPED = "Stopped"
    COMPLETED = "Completed"
    FAILED = "Failed"


TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED})


class SessionStatus(StrEnum):
    """The API's status words (the reference's TrainingSession.status, plus `pending`)."""

    CREATED = "created"
    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"


class ConditionType(StrEnum):
    READY = "Ready"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    SCHEDULABLE = "Schedulable"


class ConditionReason(StrEnum):
    POD_CREATED = "PodCreated"
    POD_RUNNING = "PodRunning"
    POD_SUCCEEDED = "PodSucceeded"
    POD_FAILED = "PodFailed"
    SUSPENDED_BY_USER = "SuspendedByUser"
    NOT_STARTED = "NotStarted"
    # Why an attempt failed (the Failed condition's reason, and a Warning Event's).
    OOM_KILLED = "OOMKilled"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    ERR_IMAGE_PULL = "ErrImagePull"
    INVALID_IMAGE_NAME = "InvalidImageName"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    EXIT_CODE = "ExitCode"
    CONTAINER_LOST = "ContainerLost"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    RETRYING = "Retrying"
    # Preemption: a pod deleted or SIGTERMed without the user asking.
    PREEMPTED = "Preempted"
    # Scheduling.
    SCHEDULED = "Scheduled"
    UNSCHEDULABLE = "Unschedulable"
    NOT_SCHEDULED = "NotScheduled"
    # The trainer cannot train this config (it exited with pivot_schema.config's
    # EXIT_CONFIG_ERROR, or the operator found the config invalid before making pods):
    # permanent, never retried.
    INVALID_CONFIG = "InvalidConfig"


# Default spec.backoffLimit: failed attempts retried before the session is Failed.
DEFAULT_BACKOFF_LIMIT = 3

# Labels on trainer pods: the attempt they belong to and their rank in the gang.
LABEL_ATTEMPT = "pivot.dev/attempt"
LABEL_RANK = "pivot.dev/rank"
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"


def _checked_config(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_config(raw)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


# The training config: checked by pivot_schema.config (the trainer's own validation) and
# stored in its canonical form; keys beyond the trainer's are kept (the CRD preserves them).
TrainingConfig = Annotated[
    dict[str, Any], AfterValidator(_checked_config), WithJsonSchema(config_json_schema())
]

# A Kubernetes resource quantity (`500m`, `2`, `16Gi`, `1e3`), not negative: what the CRD's
# `pattern` for resources.cpu and resources.memory says (the apimachinery regex, unsigned).
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)


def _whole(value: Any) -> Any:
    # As the trainer reads its config: true is no 1, 2.0 is 2, 2.5 is no integer (left for
    # the strict int check to refuse).
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Integer fields: no bool for 1, no 2.5 for 2 (JSON's 2.0 is 2). The bounds come before the
# validator, so that the schema states them as minimum.
WholeNumber = Annotated[StrictInt, BeforeValidator(_whole)]
NonNegative = Annotated[StrictInt, Field(ge=0), BeforeValidator(_whole)]
Positive = Annotated[StrictInt, Field(ge=1), BeforeValidator(_whole)]


def _quantity(value: Any) -> int | str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 2.0 is 2
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _QUANTITY.match(value) and not value.endswith("\n"):
        return value
    raise ValueError(
        f"must be a Kubernetes quantity (a whole number or a string like 500m, 2 or 16Gi), "
        f"got {value!r}"
    )


Quantity = Annotated[
    int | str,
    PlainValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": QUANTITY_PATTERN},
            ]
        }
    ),
]
# Label keys and values (nodeSelector, tolerations) as Kubernetes accepts them.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LabelKey = Annotated[str, StringConstraints(max_length=317, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]


class Resources(_CamelModel):
    gpu: NonNegative | None = None
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Toleration(_CamelModel):
    key: LabelKey | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: WholeNumber | None = None


class CheckpointPolicy(_CamelModel):
    every_epochs: int | None = Field(default=None, ge=1)
    keep_last: int | None = Field(default=None, ge=1)
    keep_best: int | None = Field(default=None, ge=0)
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    resume_from: str | None = None
    grace_period_seconds: int | None = Field(default=None, ge=1)
    delete_on_finalize: bool | None = None


class LocalObjectReference(_CamelModel):
    name: str


class EnvVar(_CamelModel):
    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None


class VolumeMount(_CamelModel):
    name: str
    mount_path: str
    sub_path: str | None = None
    read_only: bool | None = None


class DatasetVolume(_CamelModel):
    """A PersistentVolumeClaim with the data set, mounted into every trainer pod."""

    claim_name: str
    mount_path: str | None = None
    read_only: bool | None = None


class TrainingSessionSpec(_CamelModel):
    session_name: str | None = Field(default=None, max_length=253)
    tags: list[str] | None = Field(default=None, max_length=64)
    suspend: bool | None = None
    image: str | None = None
    config: TrainingConfig
    resources: Resources | None = None
    node_selector: dict[str, LabelValue] | None = None
    tolerations: list[Toleration] | None = None
    checkpoint: CheckpointPolicy | None = None
    backoff_limit: int | None = Field(default=None, ge=0)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    replicas: Positive | None = None
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = None
    runtime_class_name: str | None = None
    service_account_name: str | None = None
    scheduler_name: str | None = None
    queue_name: str | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    env: list[EnvVar] | None = None
    volumes: list[dict[str, Any]] | None = None
    volume_mounts: list[VolumeMount] | None = None
    dataset: DatasetVolume | None = None
    shm_size: int | str | None = None


class Condition(_CamelModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    observed_generation: int | None = None


class BestCheckpoint(_CamelModel):
    id: str | None = None
    epoch: int | None = None
    metric: str | None = None
    value: float | None = None


class TrainingSessionStatus(_CamelModel):
    phase: Phase | None = None
    conditions: list[Condition] | None = None
    current_epoch: int | None = Field(default=None, ge=0)
    total_epochs: int | None = Field(default=None, ge=0)
    progress: float | None = Field(default=None, ge=0, le=1)
    latest_metrics: dict[str, float] | None = None
    # latest_metrics' val_loss to 4 significant digits, for the Val-Loss printer column.
    display_val_loss: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    completed_at: str | None = None
    pod_name: str | None = None
    restarts: int | None = Field(default=None, ge=0)
    message: str | None = None
    observed_generation: int | None = None
    preemptions: int | None = Field(default=None, ge=0)
    attempt: int | None = Field(default=None, ge=0)
    launched_attempt: int | None = Field(default=None, ge=0)
    next_attempt_at: str | None = None
    pod_names: list[str] | None = None
    best_checkpoint: BestCheckpoint | None = None
    finished_at: str | None = None


_PHASE_TO_STATUS = {
    Phase.CREATED: SessionStatus.CREATED,
    Phase.PENDING: SessionStatus.PENDING,
    Phase.RUNNING: SessionStatus.RUNNING,
    Phase.STOPPED: SessionStatus.STOPPED,
    Phase.COMPLETED: SessionStatus.COMPLETED,
    Phase.FAILED: SessionStatus.FAILED,
}


def api_status(
    phase: str | None, *, suspend: bool | None, ever_started: bool = False
) -> SessionStatus:
    """The one mapping from a CR's phase (and spec.suspend) to the API's status word.

    spec.suspend is the user's latest word and the phase the operator's latest observation;
    until the operator catches up, the desired state wins for the non-terminal phases: a
    session just started reads `pending`, one just stopped reads `stopped`. `ever_started`
    (a start was asked, see ANNOTATION_STARTED_AT, or status.startedAt) tells a suspended
    session that was stopped from one that never ran.
    """
    try:
        observed = Phase(phase) if phase else None
    except ValueError:
        observed = None
    if observed in TERMINAL_PHASES:
        return _PHASE_TO_STATUS[observed]
    if suspend:
        if observed in (None, Phase.CREATED) and not ever_started:
            return SessionStatus.CREATED
        return SessionStatus.STOPPED
    if observed in (None, Phase.CREATED, Phase.STOPPED):
        return SessionStatus.PENDING
    return _PHASE_TO_STATUS[observed]


def ever_started(obj: dict[str, Any]) -> bool:
    """A start was ever asked of this TrainingSession, or its trainer ever ran."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return bool(
        annotations.get(ANNOTATION_STARTED_AT) or (obj.get("status") or {}).get("startedAt")
    )


def session_status(obj: dict[str, Any]) -> SessionStatus:
    """The API's status word of a TrainingSession object (the one rule, for every reader)."""
    return api_status(
        (obj.get("status") or {}).get("phase"),
        suspend=(obj.get("spec") or {}).get("suspend"),
        ever_started=ever_started(obj),
    )


def new_training_session(
    name: str,
    spec: TrainingSessionSpec,
    *,
    namespace: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A TrainingSession manifest as the API server expects it."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }


def crd_manifest_path() -> Path:
    """The canonical CRD file (crds/trainingsessions.pivot.dev.yaml, beside this package)."""
    return Path(__file__).resolve().parent.parent / f"{CRD_NAME}.yaml"


# The operator's reading of a TrainingSession as stored in the cluster. The API server has
# checked it against the CRD already, so these models only type it: unknown fields are
# ignored, and the config is kept exactly as written (the trainer reads it verbatim, and a
# config it would refuse is the session's InvalidConfig failure, not an unreadable spec).


class StoredTrainingSessionSpec(TrainingSessionSpec):
    model_config = ConfigDict(extra="ignore")

    config: dict[str, Any] | None = None  # type: ignore[assignment]


class StoredTrainingSessionStatus(TrainingSessionStatus):
    model_config = ConfigDict(extra="ignore")


class StoredMetadata(_CamelModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int | None = None
    resource_version: str | None = None
    deletion_timestamp: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


def _empty_if_none(value: Any) -> Any:
    return {} if value is None else value


class StoredTrainingSession(BaseModel):
    """A TrainingSession object (metadata, spec, status) as read from the cluster."""

    model_config = ConfigDict(extra="ignore")

    metadata: StoredMetadata
    spec: Annotated[StoredTrainingSessionSpec, BeforeValidator(_empty_if_none)] = Field(
        default_factory=StoredTrainingSessionSpec
    )
    status: Annotated[StoredTrainingSessionStatus, BeforeValidator(_empty_if_none)] = Field(
        default_factory=StoredTrainingSessionStatus
    )
