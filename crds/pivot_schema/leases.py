"""Heartbeats as coordination.k8s.io/v1 Leases: the operator renews one in its namespace, each
kubelet its node's in `kube-node-lease` (as a real kubelet does), and the API's /health calls a
component alive while its lease is fresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

LEASES_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
NODE_LEASE_NAMESPACE = "kube-node-lease"
OPERATOR_LEASE = "pivot-operator"
# A cluster's defaults: the operator's lease holds 15 s and is renewed every third of that.
OPERATOR_LEASE_SECONDS = 15


def micro_time(when: datetime) -> str:
    """Kubernetes' MicroTime: RFC 3339 with microseconds, in UTC."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_manifest(
    name: str, namespace: str, holder: str, duration_s: int, now: datetime
) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_s,
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
        },
    }


def renewed(lease: dict[str, Any], holder: str, duration_s: int, now: datetime) -> dict[str, Any]:
    """The lease renewed by `holder` now (acquireTime moves only when the holder changes)."""
    spec = dict(lease.get("spec") or {})
    if spec.get("holderIdentity") != holder:
        spec["acquireTime"] = micro_time(now)
    spec.update(holderIdentity=holder, leaseDurationSeconds=duration_s, renewTime=micro_time(now))
    return {**lease, "spec": spec}


def lease_fresh(lease: dict[str, Any], now: datetime | None = None) -> bool:
    """Renewed within its leaseDurationSeconds (clocks of the nodes assumed in sync, as
    Kubernetes' own leader election assumes)."""
    spec = lease.get("spec") or {}
    renew, duration = spec.get("renewTime"), spec.get("leaseDurationSeconds")
    if not renew or not duration:
        return False
    try:
        renewed_at = datetime.fromisoformat(str(renew).replace("Z", "+00:00"))
    except ValueError:
        return False
    if renewed_at.tzinfo is None:
        renewed_at = renewed_at.replace(tzinfo=UTC)
    return renewed_at + timedelta(seconds=float(duration)) >= (now or datetime.now(UTC))
