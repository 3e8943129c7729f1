"""Bodies of the monitoring routes."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CpuStats(BaseModel):
    percent: float
    count: int
    per_cpu: list[float]


class UsageStats(BaseModel):
    percent: float
    used_gb: float
    total_gb: float


class GpuStats(BaseModel):
    id: int
    name: str
    memory_percent: float
    memory_used_gb: float
    memory_total_gb: float
    utilization: float | None = None
    temperature: float | None = None


class TrainerGpu(BaseModel):
    """One GPU as a trainer's telemetry reports it (null where the driver reports nothing)."""

    index: int
    name: str
    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    memory_percent: float | None = None
    temperature_c: float | None = None
    power_watts: float | None = None


class GpuSample(BaseModel):
    timestamp: str | None = None
    gpus: list[TrainerGpu]


class SessionGpuTelemetry(BaseModel):
    """A running session's latest GPU sample, from its trainer (every few seconds)."""

    session_id: str
    session_name: str | None = None
    timestamp: str | None = None
    age_seconds: float | None = None
    gpus: list[TrainerGpu]


class SessionGpuHistory(BaseModel):
    session_id: str
    samples: list[GpuSample]


class ResourcesResponse(BaseModel):
    timestamp: str
    cpu: CpuStats
    memory: UsageStats
    disk: UsageStats
    gpu: list[GpuStats]
    # Beyond the reference: the trainers' GPUs, one entry per running session that reports.
    sessions: list[SessionGpuTelemetry] = Field(default_factory=list)
