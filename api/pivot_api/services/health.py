"""Health: the host's load and whether each backing service answers, each within a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
from kubernetes_asyncio import client
from redis.asyncio import Redis

from pivot_api.models import Components, ComponentState, HealthResponse, SystemStats
from pivot_api.services.sessions import iso_z

log = logging.getLogger(__name__)

# This process's start; each worker reports its own, which is what a probe of it measures.
_STARTED = psutil.Process().create_time()


class HealthService:
    def __init__(
        self,
        *,
        redis: Redis,
        s3: Any,
        bucket: str,
        kube: client.ApiClient | None,
        timeout_s: float,
    ) -> None:
        self._redis = redis
        self._s3 = s3
        self._bucket = bucket
        self._kube = kube
        self._timeout_s = timeout_s

    async def _check(self, name: str, probe: Callable[[], Awaitable[Any]]) -> ComponentState:
        try:
            await asyncio.wait_for(probe(), self._timeout_s)
            return "healthy"
        except Exception as exc:
            log.warning("health: %s is unhealthy: %s: %s", name, type(exc).__name__, exc)
            return "unhealthy"

    async def _redis_ping(self) -> None:
        await self._redis.ping()

    async def _s3_head(self) -> None:
        await asyncio.to_thread(self._s3.head_bucket, Bucket=self._bucket)

    async def _kube_version(self) -> None:
        if self._kube is None:
            raise RuntimeError("no Kubernetes client configured")
        await client.VersionApi(self._kube).get_code(_request_timeout=self._timeout_s)

    async def report(self) -> HealthResponse:
        database, filesystem, kubernetes = await asyncio.gather(
            self._check("database", self._redis_ping),
            self._check("filesystem", self._s3_head),
            self._check("kubernetes", self._kube_version),
        )
        components = Components(database=database, filesystem=filesystem, kubernetes=kubernetes)
        healthy = all(v == "healthy" for v in (database, filesystem, kubernetes))
        return HealthResponse(
            status="healthy" if healthy else "degraded",
            timestamp=iso_z(),
            uptime_seconds=round(time.time() - _STARTED, 3),
            system=await asyncio.to_thread(_system_stats),
            components=components,
        )


def _system_stats() -> SystemStats:
    return SystemStats(
        # Since the previous call (non-blocking): a probe must not sleep to measure the CPU.
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_percent=psutil.virtual_memory().percent,
        disk_percent=psutil.disk_usage("/").percent,
    )
