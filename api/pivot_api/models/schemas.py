"""Bodies of the model serving routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from pivot_api.schemas import absent_not_null
from pivot_api.sessions.schemas import NodeSelector, ResourceRequest, TolerationRequest
from pivot_schema.modelserver import S3_URI_PATTERN, SHA256_PATTERN

# A ModelServer's name is its Service's: a DNS label.
ModelName = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
]
Selector = Annotated[str, StringConstraints(min_length=1, max_length=253)]
ModelStatus = Literal["pending", "loading", "ready", "updating", "failed"]


class BatchingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=absent_not_null)

    max_batch_size: int | None = Field(
        default=None, ge=1, le=1024, description="Images run together at most (default 16)."
    )
    max_delay_ms: float | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="How long a batch's first image waits for others (default 5).",
    )


def _one_source(schema: dict[str, Any]) -> None:
    absent_not_null(schema)
    # Exactly one source (a body with both matches both, which oneOf refuses), and a uri
    # with its digest.
    schema["oneOf"] = [{"required": ["session_id"]}, {"required": ["uri"]}]
    schema["dependentRequired"] = {"uri": ["sha256"]}


class DeployModelRequest(BaseModel):
    """Serve a checkpoint: a session's (`best`, `latest` or an id), or a file in S3 with the
    SHA-256 it must have."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_source)

    name: ModelName = Field(description="The server's name (a DNS label): its URL's.")
    session_id: Selector | None = None
    checkpoint: Selector | None = Field(
        default=None,
        description="With session_id: best (default), latest, or a checkpoint id of the "
        "session. With uri: the id to report the file as (default: its folder's name).",
    )
    uri: str | None = Field(default=None, pattern=S3_URI_PATTERN, max_length=1024)
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    replicas: int = Field(default=1, ge=0, le=100)
    batching: BatchingRequest | None = None
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="Lesion probability threshold (default 0.5)."
    )
    compile: bool | None = None
    resources: ResourceRequest | None = None
    node_selector: NodeSelector | None = None
    tolerations: list[TolerationRequest] | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _source(self) -> DeployModelRequest:
        if (self.session_id is None) == (self.uri is None):
            raise ValueError("give session_id or uri (with sha256), not both")
        if self.uri is not None and self.sha256 is None:
            raise ValueError("a uri comes with its sha256")
        return self


class UpdateModelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=absent_not_null)

    replicas: int | None = Field(default=None, ge=0, le=100)
    checkpoint: Selector | None = Field(
        default=None, description="best, latest, or a checkpoint id: rolls the pods over."
    )


class ModelCondition(BaseModel):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


class ModelDetail(BaseModel):
    name: str
    status: ModelStatus
    session_id: str | None = None
    checkpoint: str | None = Field(
        default=None, description="What was asked: best, latest or an id (absent for a uri)."
    )
    uri: str | None = None
    checkpoint_id: str | None = Field(default=None, description="What the Ready pods serve.")
    sha256: str | None = None
    replicas: int
    ready_replicas: int = 0
    updated_replicas: int = 0
    max_batch_size: int
    max_delay_ms: float
    threshold: float
    predict_url: str = Field(description="Where predictions go, below the API.")
    created_at: str | None = None
    message: str | None = None
    conditions: list[ModelCondition] = Field(default_factory=list)


class ModelList(BaseModel):
    models: list[ModelDetail]
    total: int


class ModelDeleted(BaseModel):
    message: str


class Candidate(BaseModel):
    """A lesion candidate: a connected region of probability >= the threshold."""

    x: float = Field(description="Column of its centroid, in pixels.")
    y: float = Field(description="Row of its centroid, in pixels.")
    probability: float = Field(description="The highest probability in the region.")
    area: int = Field(description="Its size in pixels.")


class ImagePrediction(BaseModel):
    shape: list[int] = Field(description="[height, width] of the image.")
    candidates: list[Candidate]
    mask_png: str | None = Field(
        default=None, description="The probability map as a base64 8-bit PNG (when asked)."
    )


class PredictTiming(BaseModel):
    queue_ms: float = Field(description="Waiting for a batch to fill.")
    inference_ms: float = Field(description="The model's run on the batch.")
    total_ms: float
    batch_size: int = Field(description="Images in the batch this request's ran in.")


class PredictResponse(BaseModel):
    model: str
    checkpoint_id: str
    sha256: str
    predictions: list[ImagePrediction]
    timing: PredictTiming
