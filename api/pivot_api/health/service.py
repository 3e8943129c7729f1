"""Health: the host's load and whether each backing service answers, each within a deadline;
the operator and the kubelets by their heartbeat Leases (pivot_schema.leases)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
from kubernetes_asyncio import client
from redis.asyncio import Redis

from pivot_api.health.schemas import Components, ComponentState, HealthResponse, SystemStats
from pivot_api.sessions.service import iso_z
from pivot_schema.leases import NODE_LEASE_NAMESPACE, OPERATOR_LEASE, lease_fresh

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
        operator_namespace: str = "default",
        operator_lease: str = OPERATOR_LEASE,
    ) -> None:
        self._redis = redis
        self._s3 = s3
        self._bucket = bucket
        self._kube = kube
        self._timeout_s = timeout_s
        self._operator_namespace = operator_namespace
        self._operator_lease = operator_lease

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

    async def _leases(self, call: Awaitable[Any]) -> dict[str, Any]:
        """A lease read with `_preload_content=False`, as JSON (raw: no model round trip)."""
        resp = await call
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"leases: {resp.status} {resp.reason}")
        return dict(json.loads(body))

    def _coordination(self) -> client.CoordinationV1Api:
        if self._kube is None:
            raise RuntimeError("no Kubernetes client configured")
        return client.CoordinationV1Api(self._kube)

    async def _operator_alive(self) -> None:
        lease = await self._leases(
            self._coordination().read_namespaced_lease(
                self._operator_lease,
                self._operator_namespace,
                _preload_content=False,
                _request_timeout=self._timeout_s,
            )
        )
        if not lease_fresh(lease):
            raise RuntimeError(f"lease {self._operator_lease} not renewed in time")

    async def _kubelet_alive(self) -> None:
        """At least one node's lease is fresh; read a page at a time (a big cluster has
        thousands, and the first page almost always has a live one)."""
        token: str | None = None
        while True:
            more: dict[str, Any] = {"_continue": token} if token else {}
            page = await self._leases(
                self._coordination().list_namespaced_lease(
                    NODE_LEASE_NAMESPACE,
                    limit=100,
                    _preload_content=False,
                    **more,
                    _request_timeout=self._timeout_s,
                )
            )
            if any(lease_fresh(lease) for lease in page.get("items") or []):
                return
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                raise RuntimeError(f"no node lease in {NODE_LEASE_NAMESPACE} renewed in time")

    async def report(self) -> HealthResponse:
        database, filesystem, kubernetes, operator, kubelet = await asyncio.gather(
            self._check("database", self._redis_ping),
            self._check("filesystem", self._s3_head),
            self._check("kubernetes", self._kube_version),
            self._check("operator", self._operator_alive),
            self._check("kubelet", self._kubelet_alive),
        )
        components = Components(
            database=database,
            filesystem=filesystem,
            kubernetes=kubernetes,
            operator=operator,
            kubelet=kubelet,
        )
        healthy = all(v == "healthy" for v in components.model_dump().values())
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
