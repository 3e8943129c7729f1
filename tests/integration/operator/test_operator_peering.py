"""Two operator replicas with kopf peering: one acts, the other takes over when it dies."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pivot_local.platform import PEERING_NAME, LocalPlatform
from pivot_local.procs import terminate
from tests.support.operator import create_session, unique, wait_phase
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.process_kubelet]


def _log(platform: LocalPlatform, name: str) -> str:
    path = platform.logs / name
    return path.read_text(errors="replace") if path.exists() else ""


def _peers(kube: httpx.Client) -> dict[str, Any]:
    resp = kube.get(f"/apis/kopf.dev/v1/namespaces/default/kopfpeerings/{PEERING_NAME}")
    resp.raise_for_status()
    return dict(resp.json().get("status") or {})


def test_standby_replica_takes_over_when_the_active_one_is_killed(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    platform.stop_operator()
    peering = {
        "PIVOT_PEERING_NAME": PEERING_NAME,
        "PIVOT_PEERING_LIFETIME": "4",
        # One metrics/liveness port per host: the extra replicas go without.
        "PIVOT_METRICS_PORT": "0",
        "PIVOT_LIVENESS_ENDPOINT": "",
    }
    a_log, b_log = f"{unique('operator-a')}.log", f"{unique('operator-b')}.log"
    active = platform.spawn_operator({**peering, "PIVOT_PEERING_PRIORITY": "200"}, a_log)
    standby = None
    try:
        first = unique("peer-a")
        create_session(kube, first)
        wait_phase(platform, kube, first, "Completed")
        standby = platform.spawn_operator(
            {**peering, "PIVOT_PEERING_PRIORITY": "100", "PIVOT_LOG_FORMAT": "json"}, b_log
        )
        # Both replicas heartbeat into the peering object; the lower priority stays paused.
        wait_for(lambda: len(_peers(kube)) == 2, 30, "both replicas in the peering")
        assert sorted(p["priority"] for p in _peers(kube).values()) == [100, 200]

        second = unique("peer-b")
        create_session(kube, second)
        wait_phase(platform, kube, second, "Completed")
        assert f"created pod {second}-trainer" in _log(platform, a_log)
        assert second not in _log(platform, b_log)  # the standby did nothing for it
        assert "Resuming operations" not in _log(platform, b_log)

        active.kill()
        active.wait()
        third = unique("peer-c")
        create_session(kube, third)
        wait_phase(platform, kube, third, "Completed", timeout=120)
        assert f"created pod {third}-trainer" in _log(platform, b_log)
        assert "Resuming operations" in _log(platform, b_log)
        # Structured logs: every line the standby wrote is one JSON object.
        lines = [json.loads(line) for line in _log(platform, b_log).splitlines() if line]
        assert lines and all("message" in line for line in lines)
    finally:
        if active.poll() is None:
            active.kill()
            active.wait()
        if standby is not None:
            terminate(standby, timeout=10)
        platform.start_operator()
