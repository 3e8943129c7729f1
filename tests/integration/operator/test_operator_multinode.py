"""Multi-pod sessions: indexed pods, a headless Service, gang replacement, DDP on gloo."""

from __future__ import annotations

import httpx
import pytest
import redis

from pivot_local.platform import LocalPlatform
from tests.support.operator import (
    NS,
    create_session,
    delete_session,
    epochs_recorded,
    kubectl,
    pods_of,
    status_of,
    unique,
    wait_phase,
)
from tests.support.platform import TINY_CONFIG
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _names(kube: httpx.Client, name: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods_of(kube, name))


def test_gang_has_indexed_pods_a_headless_service_and_is_replaced_as_a_whole(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    name = unique("gang")
    # Never bound (another scheduler's pods): the gang's bookkeeping without any training.
    create_session(kube, name, replicas=2, schedulerName="volcano")
    try:
        wait_for(lambda: len(pods_of(kube, name)) == 2, 30, "two pods")
        assert _names(kube, name) == [f"{name}-trainer-0", f"{name}-trainer-1"]
        svc = kube.get(f"/api/v1/namespaces/{NS}/services/{name}-workers").json()
        assert svc["spec"]["clusterIP"] == "None"
        wait_for(lambda: status_of(kube, name).get("launchedAttempt") == 0, 30, "the launch")

        kube.delete(f"/api/v1/namespaces/{NS}/pods/{name}-trainer-1")
        wanted = [f"{name}-trainer-r1-0", f"{name}-trainer-r1-1"]
        wait_for(lambda: _names(kube, name) == wanted, 30, "the whole gang replaced")
        status = status_of(kube, name)
        assert status["preemptions"] == 1 and status["attempt"] == 1
    finally:
        delete_session(kube, name)


@pytest.mark.process_kubelet
def test_two_replica_session_trains_with_ddp_on_gloo_and_survives_a_pod_kill(
    platform: LocalPlatform, kube: httpx.Client, rds: redis.Redis
) -> None:
    name = unique("ddp")
    epochs = 8
    create_session(kube, name, replicas=2, config={**TINY_CONFIG, "epochs": epochs})
    wait_for(lambda: max(epochs_recorded(rds, name), default=0) >= 2, 120, "epoch 2")
    kubectl(platform, "delete", "pod", f"{name}-trainer-1", "--wait=false")
    status = wait_phase(platform, kube, name, "Completed", timeout=240)
    assert status["preemptions"] == 1
    assert epochs_recorded(rds, name) == list(range(1, epochs + 1))


GLOO_SCRIPT = """
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
print("sum", int(t.item()), "world", dist.get_world_size(), flush=True)
dist.destroy_process_group()
"""


@pytest.mark.process_kubelet
def test_kubelet_gives_a_gang_cluster_dns_and_its_own_rendezvous_port(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    """The plumbing DDP needs, without the trainer: two pods of one headless service find
    rank 0 by its cluster DNS name and rendezvous on gloo."""
    gang = unique("gloo")
    for rank in range(2):
        env = {
            "MASTER_ADDR": f"trainer-0.{gang}.{NS}.svc.cluster.local",
            "MASTER_PORT": "29500",
            "WORLD_SIZE": "2",
            "RANK": str(rank),
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{gang}-{rank}"},
            "spec": {
                "restartPolicy": "Never",
                "hostname": f"trainer-{rank}",
                "subdomain": gang,
                "containers": [
                    {
                        "name": "main",
                        "image": "python",
                        "command": ["python", "-c", GLOO_SCRIPT],
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                    }
                ],
            },
        }
        assert kube.post(f"/api/v1/namespaces/{NS}/pods", json=pod).status_code == 201

    def phases() -> list[str] | None:
        got = [
            kube.get(f"/api/v1/namespaces/{NS}/pods/{gang}-{r}").json()["status"].get("phase")
            for r in range(2)
        ]
        return got if all(p in ("Succeeded", "Failed") for p in got) else None

    try:
        assert wait_for(phases, 120, "the gloo pods to finish") == ["Succeeded", "Succeeded"]
        logs = kubectl(platform, "logs", f"{gang}-1")
        assert "sum 3 world 2" in logs
    finally:
        for r in range(2):
            kube.delete(f"/api/v1/namespaces/{NS}/pods/{gang}-{r}")
