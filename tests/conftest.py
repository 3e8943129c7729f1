"""Fixtures that start real servers once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pivot_local.kube import KubeEmulator, run_emulator_in_thread
from pivot_local.services import RedisServer, S3Server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kube_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    """One Kubernetes API emulator for the session, TrainingSession CRD preloaded.

    `.url` is its address and `.kubeconfig` a kubeconfig file (context "pivot-local").
    """
    crd = Path(__file__).resolve().parents[1] / "crds" / "trainingsessions.pivot.dev.yaml"
    with run_emulator_in_thread(crds=[crd]) as emu:
        emu.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        yield emu
