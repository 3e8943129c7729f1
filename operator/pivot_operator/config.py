"""Operator knobs, all from env (Helm fills them; `pivot up` sets them for the local platform)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: list[str] = field(default_factory=list)  # empty: cluster-wide
    trainer_image: str = "ghcr.io/pivot-dev/pivot-trainer:0.1.0"
    redis_url: str = "redis://127.0.0.1:6379/0"
    s3_endpoint: str = ""
    s3_bucket: str = "pivot"
    s3_region: str = "us-east-1"
    s3_secret_name: str = "pivot-s3"
    default_grace_period_seconds: int = 60
    progress_interval_seconds: float = 2.0
    kubeconfig: str | None = None

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
            default_grace_period_seconds=int(
                _env("PIVOT_GRACE_PERIOD_SECONDS", str(cls.default_grace_period_seconds))
            ),
            progress_interval_seconds=float(
                _env("PIVOT_PROGRESS_INTERVAL", str(cls.progress_interval_seconds))
            ),
            kubeconfig=os.environ.get("KUBECONFIG") or None,
        )
