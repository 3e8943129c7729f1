"""The API host's resources: CPU, memory and disk from psutil, GPUs from NVML when present;
and the trainers' GPUs, from each running session's telemetry stream in Redis."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pivot_api.errors import PivotError, ServiceUnavailableError
from pivot_api.monitor.schemas import (
    CpuStats,
    GpuSample,
    GpuStats,
    ResourcesResponse,
    SessionGpuHistory,
    SessionGpuTelemetry,
    TrainerGpu,
    UsageStats,
)
from pivot_api.redis_util import text
from pivot_api.sessions.service import SessionService, iso_z
from pivot_schema import keys
from pivot_schema.crd import SessionStatus

log = logging.getLogger(__name__)

_GB = 1024**3


class _Nvml:
    """NVML, initialised once per process; absent (no library, no driver) means no GPUs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lib: Any = None
        self._tried = False

    def lib(self) -> Any:
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    import pynvml  # optional: nvidia-ml-py

                    pynvml.nvmlInit()
                    self._lib = pynvml
                except Exception as exc:  # ImportError or NVMLError (no driver)
                    log.info("no GPUs reported: NVML unavailable (%s)", exc)
            return self._lib


_NVML = _Nvml()


def gpus() -> list[GpuStats]:
    nvml = _NVML.lib()
    if nvml is None:
        return []
    out = []
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                util: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:
                util = None  # e.g. a MIG instance
            try:
                temp: float | None = float(
                    nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
                )
            except nvml.NVMLError:
                temp = None
            out.append(
                GpuStats(
                    id=index,
                    name=text(nvml.nvmlDeviceGetName(handle)),
                    memory_percent=round(100.0 * mem.used / mem.total, 1) if mem.total else 0.0,
                    memory_used_gb=round(mem.used / _GB, 2),
                    memory_total_gb=round(mem.total / _GB, 2),
                    utilization=util,
                    temperature=temp,
                )
            )
    except nvml.NVMLError as exc:
        log.warning("reading GPUs through NVML failed: %s", exc)
    return out


def _usage(used: float, total: float, percent: float) -> UsageStats:
    return UsageStats(percent=percent, used_gb=round(used / _GB, 2), total_gb=round(total / _GB, 2))


def snapshot(disk_path: Path) -> ResourcesResponse:
    # interval=None: since the previous call, so a request never sleeps to measure the CPU.
    per_cpu = psutil.cpu_percent(interval=None, percpu=True)
    mem = psutil.virtual_memory()
    disk = psutil.disk_usage(str(disk_path))
    return ResourcesResponse(
        timestamp=iso_z(),
        cpu=CpuStats(
            percent=round(sum(per_cpu) / len(per_cpu), 1) if per_cpu else 0.0,
            count=psutil.cpu_count() or len(per_cpu),
            per_cpu=per_cpu,
        ),
        memory=_usage(mem.total - mem.available, mem.total, mem.percent),
        disk=_usage(disk.used, disk.total, disk.percent),
        gpu=gpus(),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def trainer_gpus(record: dict[str, Any]) -> list[TrainerGpu]:
    """The devices of one telemetry record (`keys.gpu_record`); a malformed device is
    skipped rather than failing the whole report."""
    devices = record.get("gpus")
    out: list[TrainerGpu] = []
    for i, dev in enumerate(devices if isinstance(devices, list) else []):
        if not isinstance(dev, dict):
            continue
        used, total = _number(dev.get("memory_used_bytes")), _number(dev.get("memory_total_bytes"))
        index = dev.get("index")
        out.append(
            TrainerGpu(
                index=index if isinstance(index, int) and not isinstance(index, bool) else i,
                name=str(dev.get("name") or ""),
                utilization_percent=_number(dev.get("utilization_percent")),
                memory_used_bytes=None if used is None else int(used),
                memory_total_bytes=None if total is None else int(total),
                memory_percent=round(100.0 * used / total, 1)
                if used is not None and total
                else None,
                temperature_c=_number(dev.get("temperature_c")),
                power_watts=_number(dev.get("power_watts")),
            )
        )
    return out


def _decode(fields: Any) -> dict[str, Any]:
    try:
        return keys.decode_record(fields)
    except (ValueError, UnicodeDecodeError):
        return {}  # not a record a trainer writes: a sample without GPUs


def _sample(record: dict[str, Any]) -> GpuSample:
    stamp = record.get("timestamp")
    return GpuSample(timestamp=stamp if isinstance(stamp, str) else None, gpus=trainer_gpus(record))


def _age_s(stamp: str | None, now: datetime) -> float | None:
    if stamp is None:
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(max(0.0, (now - when).total_seconds()), 3)


# Running sessions whose telemetry one /monitor/resources reports (one pipelined read).
MAX_REPORTED_SESSIONS = 1000


class ResourceService:
    def __init__(
        self,
        disk_path: Path,
        redis: Redis | None = None,
        sessions: SessionService | None = None,
    ) -> None:
        self._disk_path = disk_path
        self._redis = redis
        self._sessions = sessions

    async def report(self) -> ResourcesResponse:
        host, trainers = await asyncio.gather(
            asyncio.to_thread(snapshot, self._disk_path), self.session_gpus()
        )
        return host.model_copy(update={"sessions": trainers})

    async def session_gpus(self) -> list[SessionGpuTelemetry]:
        """The latest GPU sample of every running session that has one. Telemetry is an
        extra: with Kubernetes or Redis down, the host's resources are still reported."""
        if self._redis is None or self._sessions is None:
            return []
        try:
            running = await self._sessions.list(
                limit=MAX_REPORTED_SESSIONS, offset=0, status=SessionStatus.RUNNING
            )
        except PivotError as exc:
            log.info("no session GPU telemetry: %s", exc.message)
            return []
        if not running.sessions:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for summary in running.sessions:
            pipe.xrevrange(keys.gpu_stream(summary.session_id), count=1)
        try:
            replies = await pipe.execute()
        except RedisError as exc:
            log.warning("no session GPU telemetry: redis read failed: %s", exc)
            return []
        now = datetime.now(UTC)
        out = []
        for summary, entries in zip(running.sessions, replies, strict=True):
            if not entries:
                continue  # a CPU run, or no sample yet
            sample = _sample(_decode(entries[0][1] or {}))
            out.append(
                SessionGpuTelemetry(
                    session_id=summary.session_id,
                    session_name=summary.session_name,
                    timestamp=sample.timestamp,
                    age_seconds=_age_s(sample.timestamp, now),
                    gpus=sample.gpus,
                )
            )
        return out

    async def session_gpu_history(self, session_id: str, *, limit: int) -> SessionGpuHistory:
        """The session's latest `limit` GPU samples, oldest first (404 for no session)."""
        if self._redis is None or self._sessions is None:
            raise ServiceUnavailableError("the API is not ready: sessions are not available")
        await self._sessions.lookup(session_id)
        try:
            entries = await self._redis.xrevrange(keys.gpu_stream(session_id), count=limit)
        except RedisError as exc:
            raise ServiceUnavailableError(
                "the telemetry store is unavailable", {"reason": str(exc)}
            ) from exc
        samples = [_sample(_decode(fields or {})) for _, fields in reversed(entries or [])]
        return SessionGpuHistory(session_id=session_id, samples=samples)
