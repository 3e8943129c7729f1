"""Heartbeat Leases: fresh while renewed within their duration, as Kubernetes reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pivot_schema.leases import lease_fresh, lease_manifest, micro_time, renewed

T0 = datetime(2025, 12, 19, 10, 30, tzinfo=UTC)


def test_a_lease_is_fresh_until_its_duration_has_passed_since_the_last_renewal() -> None:
    lease = lease_manifest("pivot-operator", "pivot", "op-1", 15, T0)
    assert lease["spec"]["renewTime"] == "2025-12-19T10:30:00.000000Z"
    assert lease_fresh(lease, T0 + timedelta(seconds=15))
    assert not lease_fresh(lease, T0 + timedelta(seconds=15.001))


def test_a_lease_without_renewal_or_duration_is_not_fresh() -> None:
    assert not lease_fresh({}, T0)
    assert not lease_fresh({"spec": {"renewTime": micro_time(T0)}}, T0)
    assert not lease_fresh({"spec": {"leaseDurationSeconds": 15}}, T0)
    assert not lease_fresh({"spec": {"renewTime": "yesterday", "leaseDurationSeconds": 15}}, T0)


def test_renewing_moves_renew_time_and_acquire_time_only_for_a_new_holder() -> None:
    lease = lease_manifest("node-1", "kube-node-lease", "node-1", 40, T0)
    later = T0 + timedelta(seconds=10)
    same = renewed(lease, "node-1", 40, later)
    assert same["spec"]["renewTime"] == micro_time(later)
    assert same["spec"]["acquireTime"] == micro_time(T0)
    taken = renewed(lease, "node-2", 40, later)
    assert taken["spec"]["acquireTime"] == micro_time(later)
    assert taken["spec"]["holderIdentity"] == "node-2"
    assert lease["spec"]["renewTime"] == micro_time(T0), "the original is left as it was"
