"""Bodies of the health route."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

ComponentState = Literal["healthy", "unhealthy"]


class SystemStats(BaseModel):
    cpu_percent: float
    memory_percent: float
    disk_percent: float


class Components(BaseModel):
    database: ComponentState
    filesystem: ComponentState
    kubernetes: ComponentState
    # From heartbeat Leases: the operator's in its namespace, the nodes' in kube-node-lease
    # (healthy while at least one is fresh).
    operator: ComponentState
    kubelet: ComponentState


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded"]
    timestamp: str
    uptime_seconds: float
    system: SystemStats
    components: Components
