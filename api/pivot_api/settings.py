"""The API's one settings object, read from `PIVOT_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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

    # Largest checkpoint an upload may carry; a bigger one is refused with 413.
    checkpoint_max_upload_bytes: int = Field(default=4 * 1024**3, ge=1)
    # Part size of the S3 multipart upload an upload streams into (S3's minimum is 5 MiB).
    checkpoint_part_bytes: int = Field(default=8 * 1024**2, ge=5 * 1024**2)
    # Downloads answer 307 to a presigned S3 URL instead of streaming through the API.
    checkpoint_download_redirect: bool = False
    checkpoint_presign_expiry_s: int = Field(default=900, ge=1)
    # Live streams: a heartbeat after this long without an event.
    stream_heartbeat_s: float = Field(default=15.0, gt=0)
    # Metric points each worker keeps decoded for history reads (a cache of the Redis
    # streams, least recently used sessions dropped first); about 24 bytes a point.
    history_cache_points: int = Field(default=5_000_000, ge=1000)
    # The filesystem whose usage /monitor/resources reports as `disk`.
    disk_path: Path = Path("/")
    # Logs of the `pivot_api` loggers: one JSON object a line (with the request id), or text.
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    # Live-stream clients one worker serves at once (each holds one Redis connection for its
    # blocking read); one more is refused with 503.
    stream_max_clients: int = Field(default=2000, ge=1)

    # Background work: lifecycle events, alert evaluation, webhook delivery. Jobs that must
    # run once (not once per worker) hold a Redis lease of this length, renewed every third.
    background_jobs: bool = True
    leader_lease_s: float = Field(default=10.0, gt=0)
    # How often the TrainingSession cache is scanned for lifecycle changes.
    lifecycle_interval_s: float = Field(default=1.0, gt=0)
