"""Driving the operator directly through the Kubernetes API (tests/integration/operator): its
namespace and knobs, making and reading sessions, their pods, Events and trainer records."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

from pivot_local.platform import LocalPlatform
from pivot_local.procs import free_port
from pivot_schema import keys
from pivot_schema.crd import API_VERSION, KIND
from tests.support.platform import TINY_CONFIG, logs_of
from tests.support.targets import REAL_KUBECONFIG
from tests.support.waiting import wait_for

# A config every door accepts whose trainer fails at run time, every time (exit code 1, not the
# config error's 2, which is never retried): its data set's bucket does not exist.
FAILING_CONFIG: dict[str, Any] = {
    **TINY_CONFIG,
    "dataset": {"source": "s3", "prefix": "nothing", "bucket": "pivot-no-such-bucket"},
}

# A shared cluster gets a namespace per test run (the operator watches only that one).
NS = f"pivot-op-{uuid.uuid4().hex[:6]}" if REAL_KUBECONFIG else "default"
SESSIONS = f"/apis/pivot.dev/v1alpha1/namespaces/{NS}/trainingsessions"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
METRICS_PORT = free_port()
LIVENESS_PORT = free_port()
OPERATOR_ENV = {
    "PIVOT_METRICS_PORT": str(METRICS_PORT),
    "PIVOT_LIVENESS_ENDPOINT": f"http://127.0.0.1:{LIVENESS_PORT}/healthz",
    "PIVOT_BACKOFF_BASE_SECONDS": "1",
    "PIVOT_SCHEDULE_TIMEOUT_SECONDS": "2",
    "PIVOT_PROGRESS_INTERVAL": "1",
    "PIVOT_RESYNC_SECONDS": "5",
    "PIVOT_GRACE_PERIOD_SECONDS": "20",
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def create_session(kube: httpx.Client, name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"config": dict(TINY_CONFIG), **spec},
    }
    resp = kube.post(SESSIONS, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def get_session(kube: httpx.Client, name: str) -> dict[str, Any] | None:
    resp = kube.get(f"{SESSIONS}/{name}")
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return dict(resp.json())


def status_of(kube: httpx.Client, name: str) -> dict[str, Any]:
    session = get_session(kube, name)
    assert session is not None, f"{name} is gone"
    return dict(session.get("status") or {})


def pods_of(kube: httpx.Client, name: str) -> list[dict[str, Any]]:
    resp = kube.get(
        f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": f"pivot.dev/session={name}"}
    )
    resp.raise_for_status()
    return list(resp.json()["items"])


def events_of(kube: httpx.Client, name: str) -> list[dict[str, Any]]:
    resp = kube.get(
        f"/api/v1/namespaces/{NS}/events",
        params={"fieldSelector": f"involvedObject.name={name}"},
    )
    resp.raise_for_status()
    return [e for e in resp.json()["items"] if e["involvedObject"].get("kind") == KIND]


def wait_phase(
    platform: LocalPlatform, kube: httpx.Client, name: str, phase: str, timeout: float = 120
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = status_of(kube, name)
        if status.get("phase") == "Failed" and phase != "Failed":
            raise AssertionError(f"{name} failed: {status}\n{logs_of(platform)}")
        return status if status.get("phase") == phase else None

    try:
        return wait_for(check, timeout, f"{name} to be {phase}")
    except AssertionError:
        print(logs_of(platform))
        raise


def epochs_recorded(rds: redis.Redis, name: str) -> list[int]:
    """Every epoch record the trainer wrote, in order (each epoch must appear once)."""
    return [
        int(keys.decode_record(fields)["epoch"])
        for _id, fields in rds.xrange(keys.metrics_stream(name))
    ]


def trainer_events(rds: redis.Redis, name: str) -> list[dict[str, Any]]:
    return [keys.decode_record(f) for _id, f in rds.xrange(keys.events_stream(name))]


def kubectl(platform: LocalPlatform, *args: str) -> str:
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(platform.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": str(platform.kubeconfig)},
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def delete_session(kube: httpx.Client, name: str) -> None:
    kube.delete(f"{SESSIONS}/{name}")
