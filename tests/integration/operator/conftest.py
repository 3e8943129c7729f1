"""One local platform (no API: the operator is what is under test) with quick operator knobs:
short backoff, a short Schedulable timeout and frequent telemetry.

With PIVOT_TEST_KUBECONFIG set the operator (a local process) runs against that cluster in a
namespace of this test run; tests marked `process_kubelet` (trainers that really run) are
skipped there, the rest (pods never bound, status, Events) run unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from pivot_local.platform import LocalPlatform
from tests.support.operator import NS, OPERATOR_ENV
from tests.support.targets import REAL_KUBECONFIG


@pytest.fixture(scope="session")
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPlatform]:
    if REAL_KUBECONFIG:
        request.getfixturevalue("kube_target")  # the CRDs installed
    with LocalPlatform(
        data_dir=tmp_path_factory.mktemp("pivot-op"),
        with_api=False,
        extra_env=OPERATOR_ENV,
        namespace=NS,
        kubeconfig=REAL_KUBECONFIG,
    ) as p:
        yield p


@pytest.fixture()
def kube(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with platform.http() as client:
        yield client


@pytest.fixture()
def rds(platform: LocalPlatform) -> Iterator[redis.Redis]:
    assert platform.redis is not None
    client = redis.Redis.from_url(platform.redis.url)
    yield client
    client.close()
