"""GPU telemetry via NVML (pynvml, package nvidia-ml-py): a sample every few seconds.

Without NVML (no driver, no GPU, package missing) it does nothing, quietly: CPU runs are the
normal case here. Each sample is one record in the session's GPU stream (`keys.gpu_record`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Protocol

INTERVAL_S = 5.0


class _Sink(Protocol):
    def gpu(self, gpus: list[dict[str, Any]]) -> None: ...


def device_record(
    index: int,
    name: str,
    utilization_percent: float | None,
    memory_used_bytes: int | None,
    memory_total_bytes: int | None,
    temperature_c: float | None,
    power_milliwatts: float | None,
) -> dict[str, Any]:
    """One GPU's fields in a telemetry record (None where the driver reports nothing)."""
    return {
        "index": index,
        "name": name,
        "utilization_percent": utilization_percent,
        "memory_used_bytes": memory_used_bytes,
        "memory_total_bytes": memory_total_bytes,
        "temperature_c": temperature_c,
        "power_watts": None if power_milliwatts is None else power_milliwatts / 1000.0,
    }


def _nvml() -> Any | None:
    """The initialised pynvml module, or None when NVML is not usable here."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # ImportError, NVMLError_LibraryNotFound, driver errors: no telemetry
        return None


def read_gpus(nvml: Any) -> list[dict[str, Any]]:
    """A sample of every visible GPU; a field the device does not support is None."""

    def get(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:  # NVMLError_NotSupported and friends: that one field is unknown
            return None

    out = []
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        name = get(nvml.nvmlDeviceGetName, h)
        util = get(nvml.nvmlDeviceGetUtilizationRates, h)
        mem = get(nvml.nvmlDeviceGetMemoryInfo, h)
        temp = get(nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU)
        out.append(
            device_record(
                i,
                name.decode() if isinstance(name, bytes) else str(name or ""),
                None if util is None else float(util.gpu),
                None if mem is None else int(mem.used),
                None if mem is None else int(mem.total),
                None if temp is None else float(temp),
                get(nvml.nvmlDeviceGetPowerUsage, h),
            )
        )
    return out


class GpuMonitor:
    """Samples every `interval` seconds on a daemon thread into `sink.gpu`."""

    def __init__(self, sink: _Sink, interval: float = INTERVAL_S) -> None:
        self.sink, self.interval = sink, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """True if NVML is there and sampling started; False (and nothing else) otherwise."""
        nvml = _nvml()
        if nvml is None:
            return False
        try:
            if not nvml.nvmlDeviceGetCount():
                return False
        except Exception:
            return False

        def loop() -> None:
            while not self._stop.is_set():
                # Telemetry must never take training down.
                with contextlib.suppress(Exception):
                    self.sink.gpu(read_gpus(nvml))
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="pivot-gpu", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
