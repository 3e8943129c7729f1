"""Fixtures that start real servers once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pivot_local.cluster import apply_manifests
from pivot_local.kube import KubeEmulator, run_emulator_in_thread
from pivot_local.services import RedisServer, S3Server, SeaweedS3Server
from tests.support.targets import CRDS, NEEDS_PROCESS_KUBELET, REAL_KUBECONFIG, KubeTarget


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "process_kubelet: runs trainers through the process kubelet (emulator only)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if REAL_KUBECONFIG:
        skip = pytest.mark.skip(reason=NEEDS_PROCESS_KUBELET)
        for item in items:
            if item.get_closest_marker("process_kubelet"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server | SeaweedS3Server]:
    """moto (in memory, fast) unless PIVOT_TEST_S3=seaweedfs: the platform's own S3, which
    also checks signatures, for running the S3 tests against it."""
    server: S3Server | SeaweedS3Server
    if os.environ.get("PIVOT_TEST_S3") == "seaweedfs":
        server = SeaweedS3Server(data_dir=tmp_path_factory.mktemp("s3")).start()
    else:
        server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kube_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    """One Kubernetes API emulator for the session, PIVOT's CRDs preloaded.

    `.url` is its address and `.kubeconfig` a kubeconfig file (context "pivot-local").
    """
    crds = Path(__file__).resolve().parents[1] / "crds"
    with run_emulator_in_thread(
        crds=[crds / "trainingsessions.pivot.dev.yaml", crds / "modelservers.pivot.dev.yaml"]
    ) as emu:
        emu.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        yield emu


@pytest.fixture(scope="session")
def kube_target(request: pytest.FixtureRequest) -> KubeTarget:
    """PIVOT_TEST_KUBECONFIG's cluster (CRDs server-side applied, idempotent on a shared
    cluster; every test makes its own namespace) or else the emulator."""
    if REAL_KUBECONFIG:
        apply_manifests(REAL_KUBECONFIG, CRDS)
        return KubeTarget(Path(REAL_KUBECONFIG), None)
    emu: KubeEmulator = request.getfixturevalue("kube_emulator")
    assert emu.kubeconfig is not None
    return KubeTarget(emu.kubeconfig, emu)
