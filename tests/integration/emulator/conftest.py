"""Targets for the emulator's behaviour tests: the emulator, or a real cluster.

With PIVOT_TEST_KUBECONFIG set the same tests run against that cluster (the CRDs are
server-side applied first): that is what shows the emulator behaves like a real server. Only
tests of emulator internals (the `emulator` fixture) are skipped there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client, config

from pivot_local.kube import KubeEmulator
from tests.support.targets import KubeTarget


@pytest.fixture(scope="session")
def kube(kube_target: KubeTarget) -> KubeTarget:
    return kube_target


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
