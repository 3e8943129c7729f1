"""The whole local platform, started once: Redis, S3, the Kubernetes API emulator, the process
kubelet, the operator and the API on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pivot_local.platform import REPO_ROOT, LocalPlatform
from pivot_local.procs import free_port
from tests.support.platform import DemoRun, session_status, wait_for_status
from tests.support.targets import NEEDS_PROCESS_KUBELET, REAL_KUBECONFIG


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


@pytest.fixture(scope="session")
def demo_run(platform: LocalPlatform) -> DemoRun:
    """configs/train.yaml created, started and trained to completion over HTTP, once: the
    walking skeleton checks what it left behind and the serving e2e serves its best checkpoint
    (~45 s of training each when they trained their own)."""
    with httpx.Client(
        base_url=f"{platform.api_url}/api/v1", timeout=30, headers=platform.api_headers()
    ) as api:
        body = {"config_path": "configs/train.yaml", "session_name": "e2e", "tags": ["e2e"]}
        created = api.post("/training/sessions", json=body)
        assert created.status_code == 201, created.text
        session_id = created.json()["session_id"]
        read_back = session_status(api, session_id)
        started = api.post(f"/training/sessions/{session_id}/start")
        assert started.status_code == 200, started.text
        final = wait_for_status(api, platform, session_id, "completed", timeout=400)
    return DemoRun(created.json(), read_back, started.json(), final)
