"""The whole local platform, started once: Redis, S3, the Kubernetes API emulator, the process
kubelet, the operator and the API on free ports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from pivot_local.platform import REPO_ROOT, LocalPlatform
from pivot_local.procs import free_port
from tests.conftest import NEEDS_PROCESS_KUBELET, REAL_KUBECONFIG

T = TypeVar("T")

# Small enough to train in seconds on 2 cores, big enough to be real training.
TINY_CONFIG: dict[str, Any] = {
    "epochs": 3,
    "batch_size": 16,
    "learning_rate": 0.01,
    "image_size": 16,
    "num_train": 64,
    "num_val": 16,
    "base_channels": 4,
    "seed": 7,
}


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    if REAL_KUBECONFIG:
        # Sessions here train to completion: that needs the process kubelet (the cluster's
        # side of it is the kind job's smoke test of the installed chart).
        pytest.skip(NEEDS_PROCESS_KUBELET)
    data_dir = tmp_path_factory.mktemp("pivot")
    with LocalPlatform(
        data_dir=data_dir,
        api_port=free_port(),
        configs_dir=REPO_ROOT / "configs",
        rate_limit=False,  # the tests poll far faster than 100 requests a minute
    ) as p:
        yield p


@pytest.fixture()
def api(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{platform.api_url}/api/v1", timeout=30, headers=platform.api_headers()
    ) as client:
        yield client


@pytest.fixture()
def kube(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.kube.url, timeout=30) as client:
        yield client


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def trainer_pods(kube: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    resp = kube.get(
        "/api/v1/namespaces/default/pods",
        params={"labelSelector": f"pivot.dev/session={session_id}"},
    )
    resp.raise_for_status()
    return list(resp.json()["items"])


def session_status(api: httpx.Client, session_id: str) -> dict[str, Any]:
    resp = api.get(f"/training/sessions/{session_id}")
    resp.raise_for_status()
    return dict(resp.json())


def logs_of(platform: LocalPlatform) -> str:
    parts = []
    for path in sorted(Path(platform.logs).glob("*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
    for path in sorted((platform.data_dir / "kubelet").rglob("*.log")):
        parts.append(f"--- {path}\n{path.read_text(errors='replace')[-2000:]}")
    return "\n".join(parts)
