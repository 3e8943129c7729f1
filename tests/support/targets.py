"""Where the Kubernetes API tests run: a real cluster (PIVOT_TEST_KUBECONFIG, kind in CI) or the
session's emulator."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pivot_local.kube import KubeEmulator

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((REPO_ROOT / "crds").glob("*.yaml"))
REAL_KUBECONFIG = os.environ.get("PIVOT_TEST_KUBECONFIG") or None
NEEDS_PROCESS_KUBELET = (
    "needs pods run as local processes by pivot_local's kubelet (PIVOT_TEST_KUBECONFIG is set)"
)


@dataclass(frozen=True)
class KubeTarget:
    """A real cluster's kubeconfig, or the emulator's with the emulator itself."""

    kubeconfig: Path
    emulator: KubeEmulator | None  # None against a real cluster
