"""The FastAPI application: `create_app()` builds it, `lifespan` owns its clients.

    uvicorn pivot_api.app:app --workers 4

Each worker opens its own clients and builds its own TrainingSession cache from a watch;
everything else a request needs lives in Kubernetes, Redis or S3.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import boto3
from botocore.config import Config as BotoConfig
from fastapi import FastAPI
from kubernetes_asyncio import client
from redis.asyncio import Redis

from pivot_api import __version__
from pivot_api.errors import install_error_handlers
from pivot_api.kube import SessionCache, SessionWriter, new_api_client
from pivot_api.models import ErrorResponse
from pivot_api.routers import health, metrics, sessions
from pivot_api.services.health import HealthService
from pivot_api.services.metrics import MetricsService
from pivot_api.services.sessions import SessionService
from pivot_api.settings import Settings

log = logging.getLogger(__name__)


def _s3_client(settings: Settings):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
        # Short timeouts and few retries: a dead store must fail a call, not hang a worker.
        config=BotoConfig(connect_timeout=2, read_timeout=30, retries={"max_attempts": 2}),
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
    s3 = _s3_client(settings)
    kube: client.ApiClient | None = None
    cache: SessionCache | None = None
    try:
        kube = await new_api_client(settings.kubeconfig)
    except Exception:
        # The API still serves health (kubernetes: unhealthy); session routes answer 503.
        log.exception("no Kubernetes configuration could be loaded")

    app.state.redis = redis
    app.state.s3 = s3
    app.state.kube = kube
    app.state.health = HealthService(
        redis=redis,
        s3=s3,
        bucket=settings.s3_bucket,
        kube=kube,
        timeout_s=settings.health_timeout_s,
    )
    if kube is not None:
        objects = client.CustomObjectsApi(kube)
        cache = SessionCache(objects, settings.namespace, watch_timeout_s=settings.watch_timeout_s)
        cache.start()
        app.state.session_cache = cache
        app.state.sessions = SessionService(
            cache,
            SessionWriter(objects, settings.namespace, cache),
            settings.configs_dir,
            sync_timeout_s=settings.cache_sync_timeout_s,
        )
        app.state.metrics = MetricsService(redis, app.state.sessions)
    try:
        yield
    finally:
        if cache is not None:
            await cache.stop()
        if kube is not None:
            await kube.close()
        await redis.aclose()
        s3.close()
        for name in ("sessions", "metrics", "health", "session_cache", "redis", "s3", "kube"):
            setattr(app.state, name, None)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    prefix = settings.api_prefix.rstrip("/")
    app = FastAPI(
        title="PIVOT Training API",
        version=__version__,
        description="Create, run and watch PyTorch training sessions on Kubernetes.",
        openapi_url=f"{prefix}/openapi.json",
        docs_url="/docs",
        redoc_url="/redoc",
        lifespan=lifespan,
        responses={
            500: {"model": ErrorResponse, "description": "Internal error"},
            503: {"model": ErrorResponse, "description": "A backing service is unavailable"},
        },
    )
    app.state.settings = settings
    install_error_handlers(app)
    for router in (sessions.router, metrics.router, health.router):
        app.include_router(router, prefix=prefix)
    return app


app = create_app()
