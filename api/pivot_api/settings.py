"""The API's one settings object, read from `PIVOT_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIVOT_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    s3_endpoint: str | None = None
    s3_bucket: str = "pivot"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    # Path to a kubeconfig; when unset, in-cluster config, then ~/.kube/config.
    kubeconfig: str | None = None
    namespace: str = "default"
    configs_dir: Path = Path("configs")
    api_prefix: str = "/api/v1"

    # How long a health probe waits for each component before calling it unhealthy.
    health_timeout_s: float = Field(default=2.0, gt=0)
    # How long a read waits for the first list of TrainingSessions after startup.
    cache_sync_timeout_s: float = Field(default=10.0, gt=0)
    # Server-side timeout of one watch request; the informer reconnects after it.
    watch_timeout_s: int = Field(default=300, ge=1)
