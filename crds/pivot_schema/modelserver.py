"""The ModelServer custom resource: a checkpoint served for inference (mirrors the canonical
crds/modelservers.pivot.dev.yaml, which tests/unit/schema checks this against)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from pivot_schema.crd import (
    GROUP,
    VERSION,
    Condition,
    LabelKey,
    LabelValue,
    Resources,
    StoredMetadata,
    Toleration,
    _CamelModel,
)

MS_KIND = "ModelServer"
MS_PLURAL = "modelservers"
MS_SINGULAR = "modelserver"
MS_SHORT_NAME = "ms"
MS_CRD_NAME = f"{MS_PLURAL}.{GROUP}"

# On the server's pods and its Service's selector.
LABEL_MODEL_SERVER = "pivot.dev/modelserver"
# What a pod serves (a hash of what it was made from): pods of an earlier revision are
# replaced by a rolling update.
LABEL_REVISION = "pivot.dev/revision"
COMPONENT_SERVER = "server"

# The port every server pod listens on (named `http`), and its Service's.
SERVER_PORT = 8080
READY_PATH = "/ready"

# The server's environment (pivot_trainer.serve reads it; the operator's pods set it).
SERVE_HOST = "PIVOT_SERVE_HOST"
SERVE_PORT = "PIVOT_SERVE_PORT"
SERVE_MODEL = "PIVOT_SERVE_MODEL"
SERVE_CHECKPOINT_URI = "PIVOT_SERVE_CHECKPOINT_URI"
SERVE_SHA256 = "PIVOT_SERVE_SHA256"
SERVE_CHECKPOINT_ID = "PIVOT_SERVE_CHECKPOINT_ID"
SERVE_MAX_BATCH_SIZE = "PIVOT_SERVE_MAX_BATCH_SIZE"
SERVE_MAX_DELAY_MS = "PIVOT_SERVE_MAX_DELAY_MS"
SERVE_THRESHOLD = "PIVOT_SERVE_THRESHOLD"
SERVE_COMPILE = "PIVOT_SERVE_COMPILE"

# The server's exit codes that say something about its checkpoint (the operator does not
# retry a revision whose pods end so): its bytes are not what the manifest says (3), or it is
# missing or cannot be loaded (4). 1 is any other failure (retried), 2 a bad setting.
EXIT_CHECKSUM = 3
EXIT_UNLOADABLE = 4

CHECKPOINT_BEST = "best"
CHECKPOINT_LATEST = "latest"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
S3_URI_PATTERN = r"^s3://[^/]+/.+$"
_S3_URI = re.compile(S3_URI_PATTERN)


class ServerPhase(StrEnum):
    PENDING = "Pending"  # no pod has started loading yet
    LOADING = "Loading"  # pods are loading and warming up; none is Ready
    READY = "Ready"  # every wanted replica serves the wanted checkpoint
    UPDATING = "Updating"  # a rollout or a scaling is under way; some pods serve
    FAILED = "Failed"  # nothing can serve (the condition says why)


class ServerConditionType(StrEnum):
    READY = "Ready"  # at least one pod serves
    CHECKPOINT_VERIFIED = "CheckpointVerified"  # the wanted checkpoint loaded and checked
    PROGRESSING = "Progressing"  # a rollout is under way


class ServerConditionReason(StrEnum):
    SERVING = "Serving"
    NO_READY_PODS = "NoReadyPods"
    VERIFIED = "Verified"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    CHECKPOINT_NOT_FOUND = "CheckpointNotFound"
    LOAD_FAILED = "LoadFailed"
    INVALID_SPEC = "InvalidSpec"
    ROLLING = "RollingUpdate"
    COMPLETE = "RolloutComplete"


class ModelSource(_CamelModel):
    session: str | None = Field(default=None, max_length=253)
    checkpoint: str | None = Field(default=None, max_length=253)
    uri: str | None = Field(default=None, max_length=1024, pattern=S3_URI_PATTERN)
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        # The CRD's x-kubernetes-validations, for the API and the operator.
        if (self.session is None) == (self.uri is None):
            raise ValueError("exactly one of session and uri")
        if self.uri is not None and self.sha256 is None:
            raise ValueError("a uri needs its sha256")
        return self


class Batching(_CamelModel):
    max_batch_size: int | None = Field(default=None, ge=1, le=1024)
    max_delay_ms: float | None = Field(default=None, ge=0, le=1000)


class ModelServerSpec(_CamelModel):
    source: ModelSource
    replicas: int | None = Field(default=None, ge=0, le=100)
    image: str | None = None
    resources: Resources | None = None
    node_selector: dict[LabelKey, LabelValue] | None = None
    tolerations: list[Toleration] | None = None
    batching: Batching | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)
    compile: bool | None = None


class ModelServerStatus(_CamelModel):
    phase: ServerPhase | None = None
    conditions: list[Condition] | None = None
    replicas: int | None = Field(default=None, ge=0)
    ready_replicas: int | None = Field(default=None, ge=0)
    updated_replicas: int | None = Field(default=None, ge=0)
    checkpoint_id: str | None = None
    sha256: str | None = None
    url: str | None = None
    message: str | None = None
    observed_generation: int | None = None


# Defaults the CRD fills in (the operator reads specs that may predate them).
DEFAULT_REPLICAS = 1
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_DELAY_MS = 5.0
DEFAULT_THRESHOLD = 0.5


def modelserver_crd_path() -> Path:
    """The canonical CRD file (crds/modelservers.pivot.dev.yaml, beside this package)."""
    return Path(__file__).resolve().parent.parent / f"{MS_CRD_NAME}.yaml"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI."""
    if not _S3_URI.match(uri):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def new_model_server(
    name: str, spec: ModelServerSpec, *, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A ModelServer manifest (as the API creates it)."""
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": MS_KIND,
        "metadata": metadata,
        "spec": spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }


# ---- the operator's reading of a stored ModelServer (checked by the API server already) --


class StoredModelServerSpec(ModelServerSpec):
    model_config = ConfigDict(extra="ignore")


class StoredModelServerStatus(ModelServerStatus):
    model_config = ConfigDict(extra="ignore")


def _empty_if_none(value: Any) -> Any:
    return {} if value is None else value


class StoredModelServer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: StoredMetadata
    spec: StoredModelServerSpec
    status: Annotated[StoredModelServerStatus, BeforeValidator(_empty_if_none)] = Field(
        default_factory=StoredModelServerStatus
    )

    @property
    def replicas(self) -> int:
        return DEFAULT_REPLICAS if self.spec.replicas is None else self.spec.replicas


ConditionStatus = Literal["True", "False", "Unknown"]
