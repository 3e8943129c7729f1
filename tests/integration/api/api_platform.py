"""Helpers for the API integration tests: the real API app against the Kubernetes API
emulator (or a real cluster), a real Redis and a real S3 endpoint."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from kubernetes_asyncio import client
from redis.asyncio import Redis

from pivot_api.app import create_app
from pivot_api.settings import Settings
from pivot_schema.crd import GROUP, PLURAL, VERSION

TRAIN_YAML = """\
epochs: 4
batch_size: 2
learning_rate: 0.001
model:
  name: tiny-mlp
"""


@dataclass
class Platform:
    """What a test talks to: the API over HTTP, and the cluster and Redis behind it."""

    http: httpx.AsyncClient
    app: FastAPI
    objects: client.CustomObjectsApi
    redis: Redis
    namespace: str
    configs_dir: Path

    async def cr(self, name: str) -> dict[str, Any]:
        return await self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )

    async def crs(self) -> list[dict[str, Any]]:
        body = await self.objects.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL
        )
        return list(body["items"])

    async def patch_status(self, name: str, status: dict[str, Any]) -> None:
        """Write status the way the operator does: through the status subresource."""
        await self.objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )

    async def create(self, **body: Any) -> dict[str, Any]:
        body.setdefault("config_path", "configs/train.yaml")
        resp = await self.http.post("/api/v1/training/sessions", json=body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


# Makes the app with settings overrides: `async with factory(**overrides) as platform`.
PlatformFactory = Callable[..., contextlib.AbstractAsyncContextManager[Platform]]


def platform_settings(
    *, kubeconfig: str, namespace: str, configs_dir: Path, redis_url: str, s3: Any
) -> Settings:
    return Settings(
        redis_url=redis_url,
        s3_endpoint=s3.endpoint,
        s3_bucket=s3.bucket,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        s3_region=s3.region,
        kubeconfig=kubeconfig,
        namespace=namespace,
        configs_dir=configs_dir,
        health_timeout_s=1.0,
        lifecycle_interval_s=0.1,
        # The tests make far more than 100 requests a minute from one address; the rate
        # limiter has its own tests (test_api_ratelimit.py).
        rate_limit_enabled=False,
    )


@contextlib.asynccontextmanager
async def serve(
    settings: Settings, customize: Callable[[FastAPI], None] | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running, reached over httpx's ASGI transport; `customize`
    may change the app before it starts (e.g. its middleware)."""
    app = create_app(settings)
    if customize is not None:
        customize(app)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as http,
    ):
        yield app, http


@contextlib.asynccontextmanager
async def serve_http(settings: Settings) -> AsyncIterator[tuple[FastAPI, str]]:
    """The app under a real uvicorn server on loopback (streaming responses and WebSockets
    need a real connection), in this event loop. Yields the app and its base URL."""
    import asyncio

    import uvicorn

    from pivot_local.procs import free_port

    app = create_app(settings)
    port = free_port("127.0.0.1")
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
