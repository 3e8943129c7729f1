"""Operator knobs, all from env (Helm fills them; `pivot up` sets them for the local platform)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from pivot_schema.leases import OPERATOR_LEASE, OPERATOR_LEASE_SECONDS

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _own_namespace() -> str:
    """The pod's namespace, from its ServiceAccount mount (empty outside a cluster)."""
    try:
        return SA_NAMESPACE_FILE.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: list[str] = field(default_factory=list)  # empty: cluster-wide
    trainer_image: str = "ghcr.io/pivot-dev/pivot-trainer:0.1.0"
    redis_url: str = "redis://127.0.0.1:6379/0"
    s3_endpoint: str = ""
    s3_bucket: str = "pivot"
    s3_region: str = "us-east-1"
    s3_secret_name: str = "pivot-s3"
    # The operator's own S3 credentials (the finalizer deletes checkpoints when asked).
    s3_access_key: str = ""
    s3_secret_key: str = ""
    default_grace_period_seconds: int = 60
    progress_interval_seconds: float = 2.0
    # First retry after this many seconds, doubling per failed attempt.
    backoff_base_seconds: float = 2.0
    # A pod not bound after this long makes the session Schedulable=False.
    schedule_timeout_seconds: float = 10.0
    # Every session is looked at again at least this often (a missed watch event heals).
    resync_seconds: float = 30.0
    metrics_port: int = 0  # 0: no Prometheus endpoint
    liveness_endpoint: str | None = None  # e.g. http://0.0.0.0:8080/healthz
    # kopf peering: replicas sharing a name elect one active operator; empty: standalone.
    peering_name: str = ""
    # Highest priority alive is active; replicas of one Deployment draw a random one, since
    # kopf pauses every operator when two alive peers share a priority.
    peering_priority: int = 0
    # A replica that stops heartbeating (killed) is presumed dead after this many seconds.
    peering_lifetime: int = 30
    kubeconfig: str | None = None
    # The heartbeat Lease (pivot_operator.heartbeat) that /health reads: its namespace (the
    # operator's own), name and duration.
    lease_namespace: str = "default"
    lease_name: str = OPERATOR_LEASE
    lease_seconds: int = OPERATOR_LEASE_SECONDS

    @classmethod
    def from_env(cls) -> OperatorConfig:
        namespaces = [n for n in _env("PIVOT_NAMESPACES", "").split(",") if n.strip()]
        return cls(
            namespaces=[n.strip() for n in namespaces],
            trainer_image=_env("PIVOT_TRAINER_IMAGE", cls.trainer_image),
            redis_url=_env("PIVOT_REDIS_URL", cls.redis_url),
            s3_endpoint=_env("PIVOT_S3_ENDPOINT", cls.s3_endpoint),
            s3_bucket=_env("PIVOT_S3_BUCKET", cls.s3_bucket),
            s3_region=_env("PIVOT_S3_REGION", cls.s3_region),
            s3_secret_name=_env("PIVOT_S3_SECRET", cls.s3_secret_name),
            s3_access_key=_env("PIVOT_S3_ACCESS_KEY", ""),
            s3_secret_key=_env("PIVOT_S3_SECRET_KEY", ""),
            default_grace_period_seconds=int(
                _env("PIVOT_GRACE_PERIOD_SECONDS", str(cls.default_grace_period_seconds))
            ),
            progress_interval_seconds=float(
                _env("PIVOT_PROGRESS_INTERVAL", str(cls.progress_interval_seconds))
            ),
            backoff_base_seconds=float(
                _env("PIVOT_BACKOFF_BASE_SECONDS", str(cls.backoff_base_seconds))
            ),
            schedule_timeout_seconds=float(
                _env("PIVOT_SCHEDULE_TIMEOUT_SECONDS", str(cls.schedule_timeout_seconds))
            ),
            resync_seconds=float(_env("PIVOT_RESYNC_SECONDS", str(cls.resync_seconds))),
            metrics_port=int(_env("PIVOT_METRICS_PORT", "0")),
            liveness_endpoint=os.environ.get("PIVOT_LIVENESS_ENDPOINT") or None,
            peering_name=_env("PIVOT_PEERING_NAME", ""),
            peering_priority=int(
                _env("PIVOT_PEERING_PRIORITY", "") or random.randint(1, 1_000_000)
            ),
            peering_lifetime=int(_env("PIVOT_PEERING_LIFETIME", str(cls.peering_lifetime))),
            kubeconfig=os.environ.get("KUBECONFIG") or None,
            lease_namespace=_env("PIVOT_OPERATOR_NAMESPACE", "")
            or _own_namespace()
            or (namespaces[0].strip() if namespaces else cls.lease_namespace),
            lease_name=_env("PIVOT_OPERATOR_LEASE", cls.lease_name),
            lease_seconds=int(_env("PIVOT_OPERATOR_LEASE_SECONDS", str(cls.lease_seconds))),
        )
