"""The API's one settings object, read from `PIVOT_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pivot_api.ratelimit import parse_limits
from pivot_schema.leases import OPERATOR_LEASE


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
    # The largest prediction request (images for /models/{name}/predict), over the API's
    # general body limit: a batch of 16-bit images is megabytes.
    predict_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # The dashboard's built files (api/ui's `npm run build`); unset: those the package carries.
    ui_dir: Path | None = None

    # How long a health probe waits for each component before calling it unhealthy.
    health_timeout_s: float = Field(default=2.0, gt=0)
    # The operator's heartbeat Lease that /health reads (pivot_operator.heartbeat): the
    # operator's namespace (default: `namespace`) and the lease's name.
    operator_namespace: str | None = None
    operator_lease: str = OPERATOR_LEASE
    # How long a read waits for the first list of TrainingSessions after startup.
    cache_sync_timeout_s: float = Field(default=10.0, gt=0)
    # How long a worker whose watch cache is behind what another worker has shown waits for
    # its watch before it reads the API server directly (pivot_api.consistency).
    read_catch_up_s: float = Field(default=2.0, gt=0)
    # Server-side timeout of one watch request; the informer reconnects after it.
    watch_timeout_s: int = Field(default=300, ge=1)

    # Largest request body (JSON) any route reads; a bigger one is refused with 413 as it is
    # read. Checkpoint uploads have their own limit, below.
    max_body_bytes: int = Field(default=1024**2, ge=1024)
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

    # Rollups of metric and step series are brought up to date this often, by one worker,
    # for every running session (0: only when read).
    rollup_interval_s: float = Field(default=1.0, ge=0)

    # Alerts: every enabled rule is evaluated this often (by one worker). Resolved alerts
    # are kept this long, and at most this many; notifications likewise, by count.
    alert_interval_s: float = Field(default=10.0, gt=0)
    alert_resolved_retention_s: float = Field(default=7 * 86400, gt=0)
    alert_max_resolved: int = Field(default=10_000, ge=1)
    notification_max: int = Field(default=10_000, ge=1)

    # Webhooks. A failed delivery is retried after a random delay in [0, min(max_delay,
    # base * 2**(attempt-1))] (exponential backoff, full jitter): with the defaults, about
    # six hours on average before the event is dead-lettered after the last attempt.
    webhook_max_attempts: int = Field(default=20, ge=1)
    webhook_retry_base_s: float = Field(default=10.0, gt=0)
    webhook_retry_max_delay_s: float = Field(default=3600.0, gt=0)
    webhook_connect_timeout_s: float = Field(default=5.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_dns_timeout_s: float = Field(default=2.0, gt=0)
    # Deliveries in flight at once (each endpoint has at most one: they go out in order).
    webhook_concurrency: int = Field(default=64, ge=1)
    # How often the delivery scheduler looks for due retries when nothing wakes it.
    webhook_poll_s: float = Field(default=0.5, gt=0)
    # Entries kept per webhook: the delivery log, and the dead-letter list.
    webhook_log_size: int = Field(default=500, ge=1)
    webhook_dead_letter_size: int = Field(default=10_000, ge=1)
    # Webhooks one install may register.
    webhook_max_count: int = Field(default=1000, ge=1)
    # CIDRs and host names webhooks may reach although they are loopback, private or
    # link-local (JSON list in PIVOT_WEBHOOK_ALLOWLIST, e.g. '["10.1.0.0/16","hooks.corp"]').
    webhook_allowlist: list[str] = Field(default_factory=list)

    # API keys (format and scopes: pivot_api.auth). Off for a bare `uvicorn pivot_api.app:app`
    # run, as the reference has it; the Helm chart turns them on.
    auth_enabled: bool = False
    api_keys: SecretStr = SecretStr("")
    # A file with more keys in the same format (a mounted Secret); re-read when it changes.
    api_keys_file: Path | None = None
    # Per client IP, through Redis, in the `limits` notation; /health, /metrics and the
    # docs are exempt.
    rate_limit_enabled: bool = True
    rate_limits: str = "100/minute;1000/hour"
    # Proxies in front of the API that append to X-Forwarded-For (an ingress: 1). With 0 the
    # header is ignored and the peer address is the client.
    rate_limit_trusted_proxies: int = Field(default=0, ge=0)
    # Redis timeout of one rate-limit check; past it the request passes (fail open).
    rate_limit_timeout_s: float = Field(default=0.5, gt=0)

    @field_validator("rate_limits")
    @classmethod
    def _valid_rate_limits(cls, value: str) -> str:
        parse_limits(value)
        return value
