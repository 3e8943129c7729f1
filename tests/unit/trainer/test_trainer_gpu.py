"""GPU telemetry records, and silence where there is no NVML (these machines have no GPU)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from pivot_schema import keys
from pivot_trainer.gpu import GpuMonitor, device_record


class ListSink:
    def __init__(self) -> None:
        self.samples: list[list[dict[str, Any]]] = []

    def gpu(self, gpus: list[dict[str, Any]]) -> None:
        self.samples.append(gpus)


def test_gpu_record_carries_utilisation_memory_temperature_and_power() -> None:
    gpu = device_record(0, "NVIDIA H100", 87.0, 10 * 2**30, 80 * 2**30, 61.0, 312_500.0)
    record = keys.gpu_record([gpu], timestamp="2026-01-01T00:00:00Z")
    decoded = keys.decode_record(keys.encode_record(record))
    assert decoded == {
        "timestamp": "2026-01-01T00:00:00Z",
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA H100",
                "utilization_percent": 87.0,
                "memory_used_bytes": 10 * 2**30,
                "memory_total_bytes": 80 * 2**30,
                "temperature_c": 61.0,
                "power_watts": 312.5,
            }
        ],
    }


def test_unsupported_fields_are_null_not_missing() -> None:
    gpu = device_record(1, "T4", None, None, None, None, None)
    assert json.loads(keys.encode_record(keys.gpu_record([gpu]))[keys.DATA_FIELD])["gpus"][0] == {
        "index": 1,
        "name": "T4",
        "utilization_percent": None,
        "memory_used_bytes": None,
        "memory_total_bytes": None,
        "temperature_c": None,
        "power_watts": None,
    }


def test_without_nvml_the_monitor_does_nothing_quietly(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NVML is absent here, but not on a GPU machine: make `import pynvml` fail everywhere.
    monkeypatch.setitem(sys.modules, "pynvml", None)
    sink = ListSink()
    monitor = GpuMonitor(sink, interval=0.01)
    assert monitor.start() is False
    monitor.stop()
    assert sink.samples == []
    assert capsys.readouterr() == ("", "")


def test_gpu_stream_belongs_to_the_session() -> None:
    assert keys.gpu_stream("s-1") in keys.session_keys("s-1")
    assert keys.steps_stream("s-1") in keys.session_keys("s-1")
    assert "{s-1}" in keys.gpu_stream("s-1")
