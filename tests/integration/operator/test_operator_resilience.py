"""Preemption, eviction and a crashing operator: nothing trained is lost, no pod is doubled,
no session is left stuck."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any

import httpx
import pytest
import redis

from pivot_local.platform import LocalPlatform
from tests.support.operator import (
    FAILING_CONFIG,
    create_session,
    epochs_recorded,
    events_of,
    kubectl,
    pods_of,
    trainer_events,
    unique,
    wait_phase,
)
from tests.support.platform import TINY_CONFIG
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.process_kubelet]
EPOCHS = 10


def _wait_epoch(rds: redis.Redis, name: str, epoch: int) -> None:
    wait_for(lambda: max(epochs_recorded(rds, name), default=0) >= epoch, 90, f"epoch {epoch}")


def _running_pod(kube: httpx.Client, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for pod in pods_of(kube, name):
            statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
            if pod["status"].get("phase") == "Running" and statuses[0].get("containerID"):
                return pod
        return None

    return wait_for(check, 60, f"a running pod of {name}")


def _assert_resumed_losing_nothing(rds: redis.Redis, name: str) -> None:
    # Every epoch's metrics exactly once: the new pod resumed where the old one stopped.
    assert epochs_recorded(rds, name) == list(range(1, EPOCHS + 1))
    started = [e for e in trainer_events(rds, name) if e["type"] == "started"]
    assert len(started) == 2
    assert started[1]["resumed_from"], started


def test_pod_deleted_mid_run_is_replaced_and_resumes_from_its_checkpoint(
    platform: LocalPlatform, kube: httpx.Client, rds: redis.Redis
) -> None:
    name = unique("preempt")
    create_session(kube, name, config={**TINY_CONFIG, "epochs": EPOCHS})
    _wait_epoch(rds, name, 2)
    kubectl(platform, "delete", "pod", f"{name}-trainer", "--wait=false")
    status = wait_phase(platform, kube, name, "Completed", timeout=120)
    assert status["preemptions"] == 1
    assert status.get("restarts", 0) == 0
    assert status["podName"] == f"{name}-trainer-r1"
    _assert_resumed_losing_nothing(rds, name)
    warnings = [e for e in events_of(kube, name) if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["Preempted"]


def test_sigterm_without_deletion_counts_as_preemption_and_loses_no_epoch(
    platform: LocalPlatform, kube: httpx.Client, rds: redis.Redis
) -> None:
    name = unique("evict")
    create_session(kube, name, config={**TINY_CONFIG, "epochs": EPOCHS})
    pod = _running_pod(kube, name)
    _wait_epoch(rds, name, 2)
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("pid://"))
    done_before = max(epochs_recorded(rds, name))
    os.kill(pid, signal.SIGTERM)  # what a node drain's eviction delivers
    status = wait_phase(platform, kube, name, "Completed", timeout=120)
    assert status["preemptions"] == 1
    assert status.get("restarts", 0) == 0
    _assert_resumed_losing_nothing(rds, name)
    stopped = [e for e in trainer_events(rds, name) if e["type"] == "stopped"]
    assert stopped and stopped[0]["epoch"] >= done_before


class PodWatcher(threading.Thread):
    """Polls the sessions' pods; records any moment with two live pods for one session."""

    def __init__(self, kube_url: str, names: list[str]):
        super().__init__(daemon=True)
        self.kube_url, self.names = kube_url, names
        self.duplicates: list[tuple[str, list[str]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.kube_url, timeout=10) as kube:
            while not self.stop.is_set():
                for name in self.names:
                    live = [
                        p["metadata"]["name"]
                        for p in pods_of(kube, name)
                        if not p["metadata"].get("deletionTimestamp")
                        and (p.get("status") or {}).get("phase") in (None, "Pending", "Running")
                    ]
                    if len(live) > 1:
                        self.duplicates.append((name, live))
                time.sleep(0.05)


def test_operator_killed_repeatedly_makes_no_duplicate_pod_and_leaves_nothing_stuck(
    platform: LocalPlatform, kube: httpx.Client, rds: redis.Redis
) -> None:
    rng = random.Random(3)
    ok = [unique("crash-ok") for _ in range(2)]
    preempted = unique("crash-preempt")
    failing = unique("crash-fail")
    for name in [*ok, preempted]:
        create_session(kube, name, config={**TINY_CONFIG, "epochs": 6})
    create_session(kube, failing, config=FAILING_CONFIG, backoffLimit=2)
    watcher = PodWatcher(platform.kube.url, [*ok, preempted, failing])
    watcher.start()
    try:
        deleted = False
        for kill in range(10):
            time.sleep(rng.uniform(0.1, 1.5))
            platform.kill_operator()
            if kill == 3 and not deleted:
                # A preemption while no operator runs: the next one must notice it.
                pods = [
                    p for p in pods_of(kube, preempted) if p["status"].get("phase") == "Running"
                ]
                for pod in pods:
                    kube.delete(f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}")
                    deleted = True
            platform.start_operator()
        for name in [*ok, preempted]:
            wait_phase(platform, kube, name, "Completed", timeout=180)
            assert epochs_recorded(rds, name) == list(range(1, 7)), name
        wait_phase(platform, kube, failing, "Failed", timeout=120)
    finally:
        watcher.stop.set()
        watcher.join()
    assert watcher.duplicates == []
