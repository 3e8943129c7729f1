"""Fixtures for the API integration tests; every test gets its own namespace."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from redis.asyncio import Redis

from pivot_api.kube import new_api_client

from .api_platform import TRAIN_YAML, Platform, PlatformFactory, platform_settings, serve


@pytest.fixture(scope="session")
def kubeconfig(kube_target: Any) -> str:
    # PIVOT_TEST_KUBECONFIG's cluster when set, else the emulator (tests/conftest.py).
    return str(kube_target.kubeconfig)


@pytest.fixture
async def kube(kubeconfig: str) -> AsyncIterator[client.ApiClient]:
    api = await new_api_client(kubeconfig)
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def namespace(kube: client.ApiClient) -> AsyncIterator[str]:
    name = "api-" + secrets.token_hex(4)
    core = client.CoreV1Api(kube)
    await core.create_namespace({"metadata": {"name": name}})
    yield name
    with contextlib.suppress(ApiException):
        await core.delete_namespace(name)


@pytest.fixture
def configs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    d.mkdir()
    (d / "train.yaml").write_text(TRAIN_YAML)
    (d / "broken.yaml").write_text("epochs: 0\n")
    (d / "garbled.yaml").write_text("epochs: [1,\n")
    return d


@pytest.fixture
def platform_factory(
    kubeconfig: str,
    kube: client.ApiClient,
    namespace: str,
    configs_dir: Path,
    redis_server: Any,
    s3_server: Any,
) -> PlatformFactory:
    """The API app in this test's namespace, with `overrides` on top of the test settings."""

    @contextlib.asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Platform]:
        settings = platform_settings(
            kubeconfig=kubeconfig,
            namespace=namespace,
            configs_dir=configs_dir,
            redis_url=redis_server.url,
            s3=s3_server,
        ).model_copy(update=overrides)
        redis = Redis.from_url(redis_server.url)
        try:
            async with serve(settings) as (app, http):
                yield Platform(
                    http=http,
                    app=app,
                    objects=client.CustomObjectsApi(kube),
                    redis=redis,
                    namespace=namespace,
                    configs_dir=configs_dir,
                )
        finally:
            await redis.aclose()

    return make


@pytest.fixture
async def platform(platform_factory: PlatformFactory) -> AsyncIterator[Platform]:
    async with platform_factory() as p:
        yield p
