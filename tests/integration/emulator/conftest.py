"""Targets for the emulator's behaviour tests: the emulator, or a real cluster.

With PIVOT_TEST_KUBECONFIG set the same tests run against that cluster (which must have the
TrainingSession CRD installed); tests of emulator internals are skipped there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from pivot_local.kube import KubeEmulator


@dataclass
class KubeTarget:
    kubeconfig: Path
    emulator: KubeEmulator | None  # None against a real cluster


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest) -> KubeTarget:
    real = os.environ.get("PIVOT_TEST_KUBECONFIG")
    if real:
        return KubeTarget(Path(real), None)
    emu: KubeEmulator = request.getfixturevalue("kube_emulator")
    assert emu.kubeconfig is not None
    return KubeTarget(emu.kubeconfig, emu)


@pytest.fixture(scope="session")
def emulator(kube: KubeTarget) -> KubeEmulator:
    if kube.emulator is None:
        pytest.skip("inspects emulator internals")
    return kube.emulator


@pytest.fixture(scope="session")
async def api(kube: KubeTarget) -> AsyncIterator[client.ApiClient]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=cfg)
    async with client.ApiClient(cfg) as api_client:
        yield api_client
