"""Operator knobs, all from env (Helm fills them; `pivot up` sets them for the local platform).

Each field names its variable: several predate a common prefix rule (PIVOT_PROGRESS_INTERVAL,
PIVOT_S3_SECRET, KUBECONFIG), and the chart test reads the names from here."""

from __future__ import annotations

import random
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pivot_schema.leases import OPERATOR_LEASE, OPERATOR_LEASE_SECONDS

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _env(name: str, default: Any = PydanticUndefined, **kw: Any) -> Any:
    """A field read from the environment variable `name`."""
    return Field(default, validation_alias=name, **kw)


def _own_namespace() -> str:
    """The pod's namespace, from its ServiceAccount mount (empty outside a cluster)."""
    try:
        return SA_NAMESPACE_FILE.read_text().strip()
    except OSError:
        return ""


class OperatorConfig(BaseSettings):
    # An empty variable counts as unset: the default applies (as it did for the optional ones).
    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # Comma-separated; empty: cluster-wide.
    namespaces: Annotated[list[str], NoDecode] = _env("PIVOT_NAMESPACES", [])
    trainer_image: str = _env("PIVOT_TRAINER_IMAGE", "ghcr.io/pivot-dev/pivot-trainer:0.1.0")
    redis_url: str = _env("PIVOT_REDIS_URL", "redis://127.0.0.1:6379/0")
    s3_endpoint: str = _env("PIVOT_S3_ENDPOINT", "")
    s3_bucket: str = _env("PIVOT_S3_BUCKET", "pivot")
    s3_region: str = _env("PIVOT_S3_REGION", "us-east-1")
    s3_secret_name: str = _env("PIVOT_S3_SECRET", "pivot-s3")
    # The operator's own S3 credentials (the finalizer deletes checkpoints when asked).
    s3_access_key: str = _env("PIVOT_S3_ACCESS_KEY", "")
    s3_secret_key: str = _env("PIVOT_S3_SECRET_KEY", "")
    default_grace_period_seconds: int = _env("PIVOT_GRACE_PERIOD_SECONDS", 60)
    progress_interval_seconds: float = _env("PIVOT_PROGRESS_INTERVAL", 2.0)
    # First retry after this many seconds, doubling per failed attempt.
    backoff_base_seconds: float = _env("PIVOT_BACKOFF_BASE_SECONDS", 2.0)
    # A pod not bound after this long makes the session Schedulable=False.
    schedule_timeout_seconds: float = _env("PIVOT_SCHEDULE_TIMEOUT_SECONDS", 10.0)
    # Every session is looked at again at least this often (a missed watch event heals).
    resync_seconds: float = _env("PIVOT_RESYNC_SECONDS", 30.0)
    metrics_port: int = _env("PIVOT_METRICS_PORT", 0)  # 0: no Prometheus endpoint
    # e.g. http://0.0.0.0:8080/healthz
    liveness_endpoint: str | None = _env("PIVOT_LIVENESS_ENDPOINT", None)
    # kopf peering: replicas sharing a name elect one active operator; empty: standalone.
    peering_name: str = _env("PIVOT_PEERING_NAME", "")
    # Highest priority alive is active; replicas of one Deployment draw a random one, since
    # kopf pauses every operator when two alive peers share a priority.
    peering_priority: int = _env(
        "PIVOT_PEERING_PRIORITY", default_factory=lambda: random.randint(1, 1_000_000)
    )
    # A replica that stops heartbeating (killed) is presumed dead after this many seconds.
    peering_lifetime: int = _env("PIVOT_PEERING_LIFETIME", 30)
    kubeconfig: str | None = _env("KUBECONFIG", None)
    # The heartbeat Lease (pivot_operator.heartbeat) that /health reads: the operator's own
    # namespace (see lease_namespace), the lease's name and duration.
    operator_namespace: str = _env("PIVOT_OPERATOR_NAMESPACE", "")
    lease_name: str = _env("PIVOT_OPERATOR_LEASE", OPERATOR_LEASE)
    lease_seconds: int = _env("PIVOT_OPERATOR_LEASE_SECONDS", OPERATOR_LEASE_SECONDS)

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @cached_property
    def lease_namespace(self) -> str:
        """The heartbeat Lease's namespace: the operator's own, else its ServiceAccount's (in
        a pod), else the first watched one, else `default`."""
        return self.operator_namespace or _own_namespace() or next(iter(self.namespaces), "default")
