"""The trainer's environment (pivot_schema.env names), read once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pivot_schema import env as env_names
from pivot_trainer.config import ConfigError


@dataclass(frozen=True)
class Runtime:
    session_id: str
    redis_url: str | None
    s3_endpoint: str | None
    s3_bucket: str | None
    s3_region: str | None
    s3_access_key: str | None
    s3_secret_key: str | None
    device: str | None


def read_env(environ: dict[str, str] | None = None) -> Runtime:
    e = dict(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = e.get(name, "").strip()
        return value or None

    session_id = get(env_names.SESSION_ID)
    if not session_id:
        raise ConfigError(f"{env_names.SESSION_ID} is not set")
    device = get(env_names.DEVICE)
    if device is not None and device.split(":")[0] not in {"cpu", "cuda"}:
        raise ConfigError(f"{env_names.DEVICE} must be cpu or cuda, got {device!r}")
    return Runtime(
        session_id=session_id,
        redis_url=get(env_names.REDIS_URL),
        s3_endpoint=get(env_names.S3_ENDPOINT),
        s3_bucket=get(env_names.S3_BUCKET),
        s3_region=get(env_names.S3_REGION),
        s3_access_key=get(env_names.S3_ACCESS_KEY),
        s3_secret_key=get(env_names.S3_SECRET_KEY),
        device=device,
    )


def cpu_budget() -> int:
    """CPUs this process may really use: affinity, capped by a cgroup v2 quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)
