"""The FastAPI application: `create_app()` builds it, `lifespan` owns its clients.

    uvicorn pivot_api.app:app --workers 4

Each worker opens its own clients and builds its own TrainingSession cache from a watch;
everything else a request needs lives in Kubernetes, Redis or S3.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import boto3
from botocore.config import Config as BotoConfig
from fastapi import FastAPI, Response
from kubernetes_asyncio import client
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pivot_api import __version__
from pivot_api.alerts import endpoints as alerts
from pivot_api.alerts.service import AlertStore
from pivot_api.alerts.tasks import AlertEvaluator
from pivot_api.background import BackgroundJobs
from pivot_api.checkpoints import endpoints as checkpoints
from pivot_api.checkpoints.service import CheckpointService
from pivot_api.consistency import ReadMarks
from pivot_api.docs import install_docs
from pivot_api.errors import install_error_handlers
from pivot_api.fastpath import SessionReadFastPath, session_route
from pivot_api.head import HeadAsGet
from pivot_api.health import endpoints as health
from pivot_api.health.service import HealthService
from pivot_api.identity import endpoints as identity
from pivot_api.kube import SessionCache, SessionWriter, new_api_client
from pivot_api.limits import install_body_limit
from pivot_api.live import endpoints as live
from pivot_api.live.feed import SessionFeed
from pivot_api.live.service import LiveService
from pivot_api.metrics import endpoints as metrics
from pivot_api.metrics.service import MetricsService
from pivot_api.metrics.tasks import RollupKeeper
from pivot_api.models import endpoints as models
from pivot_api.models.service import ModelService
from pivot_api.monitor import endpoints as monitor
from pivot_api.monitor.service import ResourceService
from pivot_api.notifications import endpoints as notifications
from pivot_api.notifications.service import NotificationStore
from pivot_api.notifications.tasks import notification_consumer
from pivot_api.observability import ObservabilityMiddleware, configure_logging, metrics_payload
from pivot_api.openapi import install_openapi
from pivot_api.schemas import ErrorResponse
from pivot_api.security import install_security, public_paths
from pivot_api.sessions import endpoints as sessions
from pivot_api.sessions.pods import SessionPods
from pivot_api.sessions.service import SessionService
from pivot_api.sessions.tasks import LifecycleWatcher
from pivot_api.settings import Settings
from pivot_api.ui import install_ui
from pivot_api.webhooks import endpoints as webhooks
from pivot_api.webhooks.service import WebhookService
from pivot_api.webhooks.tasks import DeliveryScheduler, fan_out_consumer
from pivot_schema.keys import ApiKeys

log = logging.getLogger(__name__)


def _s3_client(settings: Settings):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
        # Short timeouts and few retries: a dead store must fail a call, not hang a worker.
        # SigV4 presigned URLs too (botocore presigns SigV2 by default, which S3 deprecated
        # and the local SeaweedFS rejects with response-content-disposition).
        config=BotoConfig(
            connect_timeout=2,
            read_timeout=30,
            retries={"max_attempts": 2},
            signature_version="s3v4",
        ),
    )


async def _start_background_jobs(app: FastAPI, jobs: BackgroundJobs) -> None:
    """Leader jobs run in one worker among all that share the Redis; spawned ones in each."""
    settings: Settings = app.state.settings
    cache: SessionCache | None = getattr(app.state, "session_cache", None)
    if cache is not None:
        watcher = LifecycleWatcher(
            cache,
            app.state.redis,
            app.state.api_keys,
            interval_s=settings.lifecycle_interval_s,
            marks=app.state.read_marks,
        )
        with contextlib.suppress(RedisError, OSError):  # down now: the leader sets it later
            await watcher.since()
        jobs.lead("lifecycle", watcher.run)
    if cache is not None and settings.rollup_interval_s > 0:
        keeper = RollupKeeper(app.state.metrics, cache, interval_s=settings.rollup_interval_s)
        jobs.lead("rollups", keeper.run)
    # Webhooks: every worker fans bus events out to the outboxes; one (the leader) delivers.
    webhook_service: WebhookService = app.state.webhooks
    fan_out = fan_out_consumer(webhook_service)
    with contextlib.suppress(RedisError, OSError):  # the group exists before the first event
        await fan_out.ensure_group()
    jobs.spawn("webhook-fan-out", fan_out.run)
    jobs.lead("webhooks", DeliveryScheduler(webhook_service).run)
    # Alerts: one worker evaluates the rules; notifications are made once per event by a
    # consumer group read in every worker (its group exists before the first event).
    evaluator = AlertEvaluator(
        app.state.alerts,
        cache=cache,
        sessions=getattr(app.state, "sessions", None),
        disk_path=settings.disk_path,
        interval_s=settings.alert_interval_s,
    )
    jobs.lead("alerts", evaluator.run)
    notify = notification_consumer(app.state.notifications)
    with contextlib.suppress(RedisError, OSError):
        await notify.ensure_group()
    jobs.spawn("notifications", notify.run)


# Young objects a worker allocates before the cyclic GC runs (Python's default: 700).
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Keep the cyclic garbage collector out of the request tail. A GET that awaits (the read
    barrier) leaves reference cycles behind (tasks, futures, frames); with Python's defaults
    the collector then ran so often, with full collections over the whole heap, that 1 % of
    GETs under 200 clients waited ~100 ms (bench/README.md). What startup built (modules,
    the app, pydantic's schemas) is frozen out of every collection, and young collections run
    after 50,000 allocations instead of 700: p99 back to ~13 ms. Once a process: a frozen
    object is never collected, so what is garbage now is collected first."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
    # Live streams hold blocking XREADs: their own pool, with a socket timeout that outlasts
    # one heartbeat's wait, so short request timeouts stay on the request pool.
    stream_redis = Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=settings.stream_heartbeat_s + 10,
        # redis-py's default pool stops at 100 connections: one per client is needed.
        max_connections=settings.stream_max_clients + 10,
    )
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
        operator_namespace=settings.operator_namespace or settings.namespace,
        operator_lease=settings.operator_lease,
    )
    if kube is not None:
        objects = client.CustomObjectsApi(kube)
        cache = SessionCache(objects, settings.namespace, watch_timeout_s=settings.watch_timeout_s)
        cache.start()
        app.state.session_cache = cache
        writer = SessionWriter(objects, settings.namespace, cache)
        app.state.read_marks = ReadMarks(
            redis, ApiKeys(settings.namespace), cache, catch_up_s=settings.read_catch_up_s
        )
        app.state.sessions = SessionService(
            cache,
            writer,
            settings.configs_dir,
            sync_timeout_s=settings.cache_sync_timeout_s,
            marks=app.state.read_marks,
        )
        app.state.metrics = MetricsService(
            redis, app.state.sessions, cache_points=settings.history_cache_points
        )
        app.state.live = LiveService(
            stream_redis,
            app.state.sessions,
            heartbeat_s=settings.stream_heartbeat_s,
            max_clients=settings.stream_max_clients,
        )
        app.state.pods = SessionPods(
            client.CoreV1Api(kube), settings.namespace, app.state.sessions
        )
        app.state.models = ModelService(
            kube, settings.namespace, settings.api_prefix.rstrip("/")
        )
        app.state.feed = SessionFeed(
            app.state.sessions,
            cache,
            heartbeat_s=settings.stream_heartbeat_s,
            max_clients=settings.stream_max_clients,
        )
    app.state.resources = ResourceService(
        settings.disk_path, redis=redis, sessions=getattr(app.state, "sessions", None)
    )
    app.state.checkpoints = CheckpointService(
        s3,
        settings.s3_bucket,
        getattr(app.state, "sessions", None),
        max_upload_bytes=settings.checkpoint_max_upload_bytes,
        part_bytes=settings.checkpoint_part_bytes,
        redirect_downloads=settings.checkpoint_download_redirect,
        presign_expiry_s=settings.checkpoint_presign_expiry_s,
    )
    keys = ApiKeys(settings.namespace)
    app.state.api_keys = keys
    jobs = BackgroundJobs(redis, keys, lease_ttl_s=settings.leader_lease_s)
    app.state.jobs = jobs
    app.state.webhooks = WebhookService(redis, keys, settings)
    app.state.alerts = AlertStore(
        redis,
        keys,
        resolved_retention_s=settings.alert_resolved_retention_s,
        max_resolved=settings.alert_max_resolved,
    )
    app.state.notifications = NotificationStore(
        redis, keys, max_notifications=settings.notification_max
    )
    if settings.background_jobs:
        await _start_background_jobs(app, jobs)
    tune_gc()
    try:
        yield
    finally:
        await jobs.stop()
        await app.state.webhooks.aclose()
        if cache is not None:
            await cache.stop()
        if kube is not None:
            await kube.close()
        if getattr(app.state, "feed", None) is not None:
            app.state.feed.close()
        if getattr(app.state, "models", None) is not None:
            await app.state.models.aclose()
        if getattr(app.state, "live", None) is not None:
            await app.state.live.aclose()  # the shared stream reads, before their pool
        await redis.aclose()
        await stream_redis.aclose()
        if app.state.rate_limiter is not None:
            await app.state.rate_limiter.aclose()
        s3.close()
        for name in (
            *("sessions", "metrics", "checkpoints", "live", "health", "resources"),
            *("session_cache", "read_marks", "redis", "s3", "kube", "jobs", "api_keys"),
            *("alerts", "notifications", "feed", "pods", "models"),
        ):
            setattr(app.state, name, None)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    prefix = settings.api_prefix.rstrip("/")
    app = FastAPI(
        title="PIVOT Training API",
        version=__version__,
        description="Create, run and watch PyTorch training sessions on Kubernetes.",
        openapi_url=f"{prefix}/openapi.json",
        # Served by pivot_api.docs, with their assets from the API itself (no CDN).
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        responses={
            500: {"model": ErrorResponse, "description": "Internal error"},
            503: {"model": ErrorResponse, "description": "A backing service is unavailable"},
        },
    )
    app.state.settings = settings
    configure_logging(settings.log_level, settings.log_format)
    install_error_handlers(app)
    install_docs(app, f"{prefix}/openapi.json")
    # Innermost of the middlewares (each one added wraps those before it), so the ones added
    # next still apply to the session read it answers (pivot_api.fastpath).
    app.add_middleware(
        SessionReadFastPath,
        prefix=prefix,
        route=session_route(sessions.router.routes, sessions.get_session),
    )
    app.add_middleware(HeadAsGet)  # HEAD as GET, the fast path's too; inside keys and limits
    install_body_limit(app, settings)  # 413 as a body passes PIVOT_MAX_BODY_BYTES
    install_security(app, settings)  # inside the observability middleware
    install_openapi(app, settings, public_paths(app, prefix))
    app.add_middleware(ObservabilityMiddleware)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Prometheus exposition (see pivot_api.observability for multi-worker setups)."""
        body, content_type = metrics_payload()
        return Response(body, media_type=content_type)

    for router in (
        sessions.router,
        sessions.configs_router,
        metrics.router,
        checkpoints.router,
        live.router,
        monitor.router,
        health.router,
        webhooks.router,
        alerts.router,
        notifications.router,
        identity.router,
        models.router,
    ):
        app.include_router(router, prefix=prefix)
    install_ui(app, settings.ui_dir)
    return app


app = create_app()
