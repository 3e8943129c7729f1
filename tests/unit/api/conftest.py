"""An API app whose backing services are all unreachable: enough for the HTTP surface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from pivot_api.app import create_app
from pivot_api.settings import Settings
from pivot_local.procs import free_port


def dead_kubeconfig(path: Path, port: int) -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: dead, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: dead, user: {{}}}}]
contexts: [{{name: dead, context: {{cluster: dead, user: dead}}}}]
current-context: dead
"""
    )
    return path


@pytest.fixture
def offline_settings(tmp_path: Path) -> Settings:
    port = free_port("127.0.0.1")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "train.yaml").write_text("epochs: 2\n")
    return Settings(
        redis_url=f"redis://127.0.0.1:{port}/0",
        s3_endpoint=f"http://127.0.0.1:{port}",
        s3_access_key="x",
        s3_secret_key="y",
        kubeconfig=str(dead_kubeconfig(tmp_path / "kubeconfig", port)),
        configs_dir=configs,
        health_timeout_s=0.5,
        cache_sync_timeout_s=0.5,
    )


@pytest.fixture
def offline_app(offline_settings: Settings) -> FastAPI:
    return create_app(offline_settings)


@pytest.fixture
async def offline_client(offline_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=offline_app, raise_app_exceptions=False)
    async with (
        offline_app.router.lifespan_context(offline_app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        yield client
