"""The API host's resources: CPU, memory and disk from psutil, GPUs from NVML when present."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import psutil

from pivot_api.models import CpuStats, GpuStats, ResourcesResponse, UsageStats
from pivot_api.services.sessions import iso_z

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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
                    name=_text(nvml.nvmlDeviceGetName(handle)),
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


class ResourceService:
    def __init__(self, disk_path: Path) -> None:
        self._disk_path = disk_path

    async def report(self) -> ResourcesResponse:
        return await asyncio.to_thread(snapshot, self._disk_path)
