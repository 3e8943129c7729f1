"""The trainer's environment (pivot_schema.env names), read once at start."""

from __future__ import annotations

import os
from collections.abc import Callable
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
    # Distributed training (torchrun's names); world_size 1 trains in this process alone.
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    # Telemetry buffer (see pivot_trainer.sink): None picks the sink's defaults.
    spool_dir: str | None = None
    spool_max_bytes: int | None = None
    sink_memory_records: int | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes metrics, events and checkpoints."""
        return self.rank == 0


def _env_int(get: Callable[[str], str | None], name: str, default: int, lo: int) -> int:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < lo:
        raise ConfigError(f"{name} must be at least {lo}, got {value}")
    return value


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
    world_size = _env_int(get, env_names.WORLD_SIZE, 1, 1)
    if get(env_names.RANK) is not None:  # torchrun sets RANK and LOCAL_RANK per process
        rank = _env_int(get, env_names.RANK, 0, 0)
        local_rank = _env_int(get, env_names.LOCAL_RANK, 0, 0)
    else:  # one process per pod: the pod's rank is the process's
        nproc = _env_int(get, env_names.NPROC_PER_NODE, 1, 1)
        rank, local_rank = _env_int(get, env_names.NODE_RANK, 0, 0) * nproc, 0
    if rank >= world_size:
        raise ConfigError(f"rank {rank} is outside {env_names.WORLD_SIZE}={world_size}")
    master_addr = get(env_names.MASTER_ADDR)
    if world_size > 1 and master_addr is None:
        raise ConfigError(f"{env_names.WORLD_SIZE}={world_size} needs {env_names.MASTER_ADDR}")
    master_port = _env_int(get, env_names.MASTER_PORT, env_names.DEFAULT_MASTER_PORT, 1)
    spool_max = get(env_names.SPOOL_MAX_BYTES)
    memory = get(env_names.SINK_MEMORY_RECORDS)
    return Runtime(
        session_id=session_id,
        redis_url=get(env_names.REDIS_URL),
        s3_endpoint=get(env_names.S3_ENDPOINT),
        s3_bucket=get(env_names.S3_BUCKET),
        s3_region=get(env_names.S3_REGION),
        s3_access_key=get(env_names.S3_ACCESS_KEY),
        s3_secret_key=get(env_names.S3_SECRET_KEY),
        device=device,
        world_size=world_size,
        rank=rank,
        local_rank=local_rank,
        master_addr=master_addr,
        master_port=master_port if world_size > 1 else None,
        spool_dir=get(env_names.SPOOL_DIR),
        spool_max_bytes=None
        if spool_max is None
        else _env_int(get, env_names.SPOOL_MAX_BYTES, 0, 0),
        sink_memory_records=None
        if memory is None
        else _env_int(get, env_names.SINK_MEMORY_RECORDS, 0, 1),
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
