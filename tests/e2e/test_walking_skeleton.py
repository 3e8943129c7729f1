"""One TrainingSession goes the whole way: API, CR, operator, pod, trainer, Redis/S3, API.

Everything here talks to the platform over HTTP (or kubectl), as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pivot_local.platform import REPO_ROOT, LocalPlatform
from pivot_schema import storage
from tests.support.platform import (
    TINY_CONFIG,
    DemoRun,
    trainer_pods,
    wait_for_status,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

KUBECTL = str(Path(sys.executable).parent / "kubectl")


def create_and_start(api: httpx.Client, **body: Any) -> str:
    resp = api.post("/training/sessions", json=body)
    assert resp.status_code == 201, resp.text
    session_id = resp.json()["session_id"]
    resp = api.post(f"/training/sessions/{session_id}/start")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "running"
    return str(session_id)


def test_demo_config_trains_to_completion_over_http(
    api: httpx.Client, platform: LocalPlatform, demo_run: DemoRun
) -> None:
    created = demo_run.created
    assert created["status"] == "created"
    session_id = created["session_id"]
    demo = yaml.safe_load((REPO_ROOT / "configs" / "train.yaml").read_text())
    assert created["config"]["epochs"] == demo["epochs"]
    assert demo_run.read_back["status"] == "created"
    assert demo_run.started["status"] == "running"

    final = demo_run.final
    assert final["status"] == "completed"
    total = demo["epochs"]
    assert final["total_epochs"] == total
    assert final["current_epoch"] == total
    assert final["progress"] == 1.0
    assert final["completed_at"] and final["started_at"]

    rows = api.get(f"/training/sessions/{session_id}/metrics").json()["metrics"]
    assert [r["epoch"] for r in rows] == list(range(1, total + 1))
    for row in rows:
        for name in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate"):
            assert isinstance(row[name], float), (name, row)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]

    history = api.get(f"/metrics/{session_id}/history", params={"metric_name": "val_loss"}).json()
    assert history["metric_name"] == "val_loss"
    assert history["epochs"] == list(range(1, total + 1))
    assert history["values"] == [r["val_loss"] for r in rows]
    assert history["timestamps"] == [r["timestamp"] for r in rows]

    # Step points, as the trainer packs them (column entries), read back through the API.
    steps = api.get(f"/metrics/{session_id}/steps").json()
    per_epoch = -(-demo["num_train"] // demo["batch_size"]) // demo["log_every_steps"]
    assert steps["total_points"] == len(steps["steps"]) == total * per_epoch
    assert steps["steps"] == sorted(set(steps["steps"]))
    assert sorted(set(steps["epochs"])) == list(range(1, total + 1))
    assert all(isinstance(v, float) and v > 0 for v in steps["values"])
    when = [
        datetime.fromisoformat(t.replace("Z", "+00:00"))
        for t in (final["started_at"], steps["timestamps"][0], steps["timestamps"][-1])
    ]
    assert when == sorted(when)  # stamped while it trained

    assert platform.s3 is not None
    s3 = platform.s3.client()
    ckpt = storage.checkpoint_id(session_id, total)
    head = s3.head_object(Bucket=platform.s3.bucket, Key=storage.model_key(session_id, ckpt))
    assert head["ContentLength"] > 0
    manifest = s3.get_object(Bucket=platform.s3.bucket, Key=storage.manifest_key(session_id, ckpt))
    parsed = storage.CheckpointManifest.model_validate_json(manifest["Body"].read())
    assert parsed.epoch == total
    assert parsed.size_bytes == head["ContentLength"]


def kubectl(platform: LocalPlatform, *args: str, input: str | None = None) -> str:
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(platform.kubeconfig), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def test_kubectl_applied_session_runs_and_the_api_lists_it(
    api: httpx.Client, platform: LocalPlatform
) -> None:
    name = f"kubectl-{os.getpid()}"
    manifest = {
        "apiVersion": "pivot.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": name},
        "spec": {"sessionName": "from-kubectl", "config": TINY_CONFIG},
    }
    kubectl(platform, "apply", "-f", "-", input=yaml.safe_dump(manifest))
    kubectl(
        platform, "wait", "--for=jsonpath={.status.phase}=Completed", f"ts/{name}", "--timeout=180s"
    )
    # The API reads CRs from a watch-backed cache: it follows the cluster, moments later.
    def listed() -> list[dict[str, Any]] | None:
        sessions = api.get("/training/sessions", params={"limit": 1000}).json()["sessions"]
        mine = [s for s in sessions if s["session_id"] == name]
        return mine if mine and mine[0]["status"] == "completed" else None

    mine = wait_for(listed, 30, f"the API to list {name} as completed")
    assert mine[0]["session_name"] == "from-kubectl"
    table = kubectl(platform, "get", "ts", name)
    assert "Completed" in table and name in table
    logs = kubectl(platform, "logs", f"{name}-trainer")
    assert "epoch" in logs.lower()


def test_stop_while_running_deletes_the_pod_and_the_trainer(
    api: httpx.Client, kube: httpx.Client, platform: LocalPlatform
) -> None:
    slow = {**TINY_CONFIG, "epochs": 200}
    session_id = create_and_start(api, config=slow, session_name="to-stop")
    wait_for_status(api, platform, session_id, "running", timeout=60)
    wait_for(lambda: trainer_pods(kube, session_id), 30, "the trainer pod")
    container_id = wait_for(
        lambda: (
            (trainer_pods(kube, session_id) or [{}])[0]
            .get("status", {})
            .get("containerStatuses", [{}])[0]
            .get("containerID")
        ),
        30,
        "the trainer process",
    )
    pid = int(container_id.removeprefix("pid://"))
    assert _alive(pid)

    resp = api.post(f"/training/sessions/{session_id}/stop")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "stopped"

    wait_for_status(api, platform, session_id, "stopped", timeout=60)
    wait_for(lambda: trainer_pods(kube, session_id) == [], 60, "the pod to be deleted")
    wait_for(lambda: not _alive(pid), 30, "the trainer process to exit")
    again = api.post(f"/training/sessions/{session_id}/stop")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "CONFLICT"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_operator_killed_mid_run_never_makes_a_second_pod(
    api: httpx.Client, kube: httpx.Client, platform: LocalPlatform
) -> None:
    config = {**TINY_CONFIG, "epochs": 12}
    session_id = create_and_start(api, config=config, session_name="operator-crash")
    wait_for_status(api, platform, session_id, "running", timeout=60)
    (first,) = trainer_pods(kube, session_id)

    platform.kill_operator()
    platform.start_operator()
    # While the new operator resumes every session, the pod set must not grow.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        pods = trainer_pods(kube, session_id)
        assert len(pods) == 1, pods
        time.sleep(0.25)

    final = wait_for_status(api, platform, session_id, "completed", timeout=180)
    assert final["current_epoch"] == 12
    (last,) = trainer_pods(kube, session_id)
    assert last["metadata"]["uid"] == first["metadata"]["uid"]


def test_schema_violating_cr_is_refused_with_422(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    bad = {
        "apiVersion": "pivot.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": "bad-epochs"},
        "spec": {"config": {"epochs": 0}},
    }
    resp = kube.post("/apis/pivot.dev/v1alpha1/namespaces/default/trainingsessions", json=bad)
    assert resp.status_code == 422
    assert resp.json()["reason"] == "Invalid"
    assert (
        kube.get(
            "/apis/pivot.dev/v1alpha1/namespaces/default/trainingsessions/bad-epochs"
        ).status_code
        == 404
    )


def _session_count(kube: httpx.Client) -> int:
    resp = kube.get("/apis/pivot.dev/v1alpha1/namespaces/default/trainingsessions")
    return len(resp.json()["items"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"config_path": "configs/does-not-exist.yaml"}, 404),
        ({"config_path": "../../etc/passwd"}, 422),
        ({"session_name": "no config"}, 422),
        ({"config": {"epochs": 0}}, 422),
        ({"config": {"epochs": "many"}}, 422),
        ({"config_path": "configs/train.yaml", "tags": "not-a-list"}, 422),
    ],
)
def test_bad_input_gets_the_envelope_and_creates_nothing(
    api: httpx.Client, kube: httpx.Client, body: dict[str, Any], status: int
) -> None:
    before = _session_count(kube)
    resp = api.post("/training/sessions", json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] in {"NOT_FOUND", "VALIDATION_ERROR"}
    assert error["message"]
    assert _session_count(kube) == before


def test_invalid_json_body_gets_422(api: httpx.Client) -> None:
    resp = api.post(
        "/training/sessions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "VALIDATION_ERROR"


def test_health_reports_every_component(api: httpx.Client) -> None:
    body = api.get("/health").json()
    assert body["status"] == "healthy", body
    assert body["components"] == {
        "database": "healthy",
        "filesystem": "healthy",
        "kubernetes": "healthy",
        "operator": "healthy",
        "kubelet": "healthy",
    }
