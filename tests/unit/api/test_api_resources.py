"""/monitor/resources: the API host's CPU, memory, disk and GPUs, as the reference gives them."""

from __future__ import annotations

import httpx
import psutil


async def test_resources_report_cpu_memory_disk_and_gpus(offline_client: httpx.AsyncClient) -> None:
    resp = await offline_client.get("/api/v1/monitor/resources")
    assert resp.status_code == 200
    body = resp.json()
    # The reference's fields, and `sessions` (trainers' GPU telemetry; none offline).
    assert set(body) == {"timestamp", "cpu", "memory", "disk", "gpu", "sessions"}
    assert body["sessions"] == []
    assert body["timestamp"].endswith("Z")
    cpu = body["cpu"]
    assert cpu["count"] == psutil.cpu_count()
    assert len(cpu["per_cpu"]) == psutil.cpu_count()
    assert all(0 <= p <= 100 for p in [cpu["percent"], *cpu["per_cpu"]])
    for part in ("memory", "disk"):
        usage = body[part]
        assert set(usage) == {"percent", "used_gb", "total_gb"}
        assert 0 <= usage["used_gb"] <= usage["total_gb"] and 0 <= usage["percent"] <= 100
    assert isinstance(body["gpu"], list)  # [] on a host without NVML
    for gpu in body["gpu"]:
        assert set(gpu) == {
            "id",
            "name",
            "memory_percent",
            "memory_used_gb",
            "memory_total_gb",
            "utilization",
            "temperature",
        }
