"""kopf handlers: thin. Every trigger (the CR's create/resume/spec change, any event of one
of its pods, the per-session daemon's timer) runs the same `sync`: read the CR and its pods,
`decide`, apply the plan, repeat until nothing is left to do."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from pivot_operator import heartbeat, metrics, serving_handlers  # serving: its handlers too
from pivot_operator.builders import build_headless_service, build_trainer_pod, replicas_of
from pivot_operator.config import OperatorConfig
from pivot_operator.kube import ServingKube, SessionKube, make_api_client
from pivot_operator.pods import PodView, owned_by
from pivot_operator.reconcile import backoff_delay, decide, total_epochs
from pivot_operator.scheduler import Action, Cadence, Key, Scheduler, nap
from pivot_operator.status import status_diff
from pivot_operator.telemetry import (
    Telemetry,
    best_checkpoint,
    delete_checkpoints,
    telemetry_fields,
)
from pivot_operator.ttl import ttl_remaining
from pivot_schema.crd import (
    GROUP,
    LABEL_MANAGED_BY,
    LABEL_SESSION,
    MANAGED_BY,
    PLURAL,
    TERMINAL_PHASES,
    VERSION,
    Phase,
    StoredTrainingSession,
    StoredTrainingSessionSpec,
    StoredTrainingSessionStatus,
)

# Read once at import: decorator arguments need it before startup.
CONFIG = OperatorConfig()
ANNOTATION_PREFIX = "pivot.dev"
MAX_STEPS = 8  # decide/apply rounds per sync; a plan converges in 2-4


def _now() -> datetime:
    return datetime.now(UTC)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Only the deletion handler keeps kopf state (reconcile is a stateless event handler). It
    # lives in annotations: status is ours and the CRD prunes unknown status fields, so kopf's
    # default `status.kopf` would be dropped.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.posting.level = logging.WARNING
    # Reconnect watches regularly so a silently dropped connection is noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.batching.idle_timeout = 5.0
    if CONFIG.peering_name:
        settings.peering.name = CONFIG.peering_name
        settings.peering.mandatory = True
        settings.peering.clusterwide = not CONFIG.namespaces
        settings.peering.priority = CONFIG.peering_priority
        # A killed leader stops heartbeating; a standby takes over once its lifetime ends.
        settings.peering.lifetime = CONFIG.peering_lifetime
    memo.config = CONFIG
    memo.kube = ServingKube(await make_api_client(CONFIG.kubeconfig))
    memo.telemetry = Telemetry(CONFIG.redis_url)
    memo.locks = {}
    memo.scheduler = Scheduler()
    memo.heartbeat = heartbeat.start(memo.kube.api, CONFIG)  # what /health calls "operator"
    serving_handlers.setup(memo)
    metrics.serve(CONFIG.metrics_port)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    memo.heartbeat.cancel()
    await memo.telemetry.close()
    await memo.kube.api.close()


@dataclass
class Synced:
    phase: str | None
    requeue_after: float | None


async def _telemetry(
    memo: kopf.Memo, name: str, logger: logging.Logger | kopf.Logger
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, bool]:
    """(latest epoch record, best checkpoint, whether Redis could be read)."""
    try:
        telemetry: Telemetry = memo.telemetry
        latest = await telemetry.latest_epoch_record(name)
        best = best_checkpoint(await telemetry.recent_events(name))
        return latest, best, True
    except Exception as exc:  # telemetry is best effort: Redis down must not block scheduling
        logger.warning(f"telemetry unavailable for {name}: {exc}")
        return None, None, False


async def sync(
    memo: kopf.Memo, namespace: str, name: str, logger: logging.Logger | kopf.Logger, trigger: str
) -> Synced | None:
    """Bring one session to a fixed point. Serialised per session in this process; across
    processes (a failover overlap) status writes carry the resourceVersion they were computed
    from and pods have per-attempt names, so two writers cannot both win."""
    locks: dict[tuple[str, str], asyncio.Lock] = memo.locks
    lock = locks.setdefault((namespace, name), asyncio.Lock())
    metrics.RECONCILES.labels(trigger).inc()
    started = time.monotonic()
    try:
        async with lock:
            return await _sync(memo, namespace, name, logger)
    except Exception:
        metrics.ERRORS.labels(trigger).inc()
        raise
    finally:
        metrics.LATENCY.observe(time.monotonic() - started)


async def _sync(
    memo: kopf.Memo, namespace: str, name: str, logger: logging.Logger | kopf.Logger
) -> Synced | None:
    kube: SessionKube = memo.kube
    config: OperatorConfig = memo.config
    synced: Synced | None = None
    obj: dict[str, Any] | None = None  # the CR as last read or written; None: read it again
    session: StoredTrainingSession | None = None
    pods: list[PodView] = []
    for _step in range(MAX_STEPS):
        if obj is None or session is None:
            obj = await kube.get_session(namespace, name)
            if obj is None:
                return None
            session = StoredTrainingSession.model_validate(obj)
            if session.metadata.deletion_timestamp:
                return None
            pods = [
                PodView.from_pod(p)
                for p in await kube.list_session_pods(namespace, name)
                if owned_by(p, session.metadata.uid)
            ]
        latest, best, telemetry_ok = (None, None, True)
        if session.status.phase not in TERMINAL_PHASES and any(
            p.phase in ("Running", "Succeeded") for p in pods
        ):
            # Only a started trainer has telemetry: pending sessions cost Redis nothing.
            latest, best, telemetry_ok = await _telemetry(memo, name, logger)
        replicas = replicas_of(session.spec)
        plan = decide(
            session.spec,
            obj.get("status") or {},
            pods,
            _now(),
            replicas=replicas,
            latest=latest,
            best=best,
            backoff_base=config.backoff_base_seconds,
            schedule_timeout=config.schedule_timeout_seconds,
            generation=session.metadata.generation,
            annotations=session.metadata.annotations,
            telemetry_ok=telemetry_ok,
        )
        synced = Synced(session.status.phase, plan.requeue_after)
        if plan.create:
            # Creates come only from a plan that keeps status.attempt, so they may run before
            # its status patch; the pods are then decided on with the rest in one patch.
            attempt = session.status.attempt or 0
            if replicas > 1:
                await kube.create_service(namespace, build_headless_service(session))
            for rank in plan.create:
                manifest = build_trainer_pod(session, config, attempt, rank)
                made = await kube.create_pod(namespace, manifest)
                if made is not None:
                    metrics.PODS_CREATED.inc()
                    logger.info(f"created pod {manifest['metadata']['name']}")
                else:  # 409: it exists (or still terminates): read it
                    made = await kube.get_pod(namespace, manifest["metadata"]["name"])
                if made is not None:
                    pods.append(PodView.from_pod(made))
            continue
        if plan.status:
            try:
                obj = await kube.patch_session_status(
                    namespace,
                    name,
                    plan.status,
                    resource_version=session.metadata.resource_version,
                )
            except ApiException as exc:
                if exc.status == 409:
                    obj = None  # the CR moved on since we read it: look again
                    continue
                raise
            session = StoredTrainingSession.model_validate(obj)
            synced = Synced(session.status.phase, plan.requeue_after)
            _post_events(obj, plan.events, logger)
        if plan.delete:
            for pod_name in plan.delete:
                await kube.delete_pod(namespace, pod_name)
            obj = None  # deletions change what the pods look like: read them again
            continue
        if plan.idle:
            break
    if synced is not None and synced.requeue_after is not None:
        memo.scheduler.requeue((namespace, name), synced.requeue_after)
    return synced


def _post_events(
    obj: dict[str, Any], events: list[tuple[str, str, str]], logger: logging.Logger | kopf.Logger
) -> None:
    name = obj["metadata"]["name"]
    for etype, reason, message in events:
        kopf.event(kopf.Body(cast(kopf.RawBody, obj)), type=etype, reason=reason, message=message)
        log = logger.warning if etype == "Warning" else logger.info
        log(f"session {name}: {reason}: {message}")
        if reason == "Preempted":
            metrics.PREEMPTIONS.inc()
        elif etype == "Warning" and reason not in ("Retrying", Phase.FAILED.value):
            metrics.ATTEMPTS_FAILED.labels(reason).inc()


async def _sync_or_retry(
    memo: kopf.Memo, key: Key, logger: logging.Logger | kopf.Logger, trigger: str
) -> None:
    """Sync from an event handler. kopf retries no event handler: a failed sync becomes the
    session's daemon's, shortly (and a failure there is kopf's to retry, see `supervise`)."""
    namespace, name = key
    try:
        await sync(memo, namespace, name, logger, trigger=trigger)
    except Exception as exc:
        memo.scheduler.requeue(key, memo.config.backoff_base_seconds)
        logger.warning(f"sync of {name} failed, retrying: {exc!r}")


def spec_unobserved(body: kopf.Body | dict[str, Any]) -> bool:
    """The CR's spec (generation) is not yet answered by its status: it is new or changed."""
    status = StoredTrainingSessionStatus.model_validate(body.get("status") or {})
    if status.phase in TERMINAL_PHASES:
        return False
    return bool(status.observed_generation != (body.get("metadata") or {}).get("generation"))


# The initial listing (the operator's start) reconciles every session; later events only a
# new or changed spec. A stateless event handler instead of on.create/resume/update: kopf then
# writes no progress or diff-base annotations per session (one PATCH each, plus the watch event
# it causes), status.observedGeneration being the record of what was handled.
_TRIGGERS = {None: "resume", "ADDED": "create", "MODIFIED": "update"}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def reconcile(
    event: kopf.RawEvent,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    key = (namespace or "default", name)
    # kopf has already put this event's body into the daemon's view: let it look.
    memo.scheduler.wake(key)
    kind = event.get("type")
    if kind not in _TRIGGERS or (kind is not None and not spec_unobserved(body)):
        return
    await _sync_or_retry(memo, key, logger, trigger=_TRIGGERS[kind])


@kopf.on.event("", "v1", "pods", labels={LABEL_SESSION: kopf.PRESENT, LABEL_MANAGED_BY: MANAGED_BY})
async def pod_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Any change of a trainer pod (phase, deletion, eviction) re-reconciles its session."""
    if event.get("type") == "ADDED":
        return  # made by a sync that already decided on it (a restart's listing has no type)
    meta = body.get("metadata") or {}
    session_name = (meta.get("labels") or {}).get(LABEL_SESSION)
    if session_name:
        key = (meta.get("namespace") or "default", session_name)
        await _sync_or_retry(memo, key, logger, trigger="pod")


DAEMON_RESTART_CAP_S = 60.0


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0, initial_delay=1.0)
async def supervise(
    name: str,
    namespace: str | None,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    retry: int,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Time-driven work of one session: retries after their backoff, the Schedulable timeout,
    telemetry while it runs (patched only on change), a periodic resync, and the TTL of a
    finished session. `body` is kopf's live view of the CR, so looking costs no request;
    it naps on `stopped`, so it ends with the session or the operator. A failure ends it
    with kopf.TemporaryError: kopf starts it again after a growing backoff (at most 60 s),
    to sync at once."""
    key = (namespace or "default", name)
    scheduler: Scheduler = memo.scheduler
    with scheduler.attach(key) as wakeup:
        try:
            await _supervise(memo, key, body, stopped, wakeup, logger)
        except Exception as exc:
            scheduler.requeue(key, 0.0)
            # kopf never resets a daemon's retry count, so the delay is capped at kopf's own
            # default (60 s): a long Redis outage must not leave sessions unsupervised longer.
            base = memo.config.backoff_base_seconds
            delay = min(DAEMON_RESTART_CAP_S, backoff_delay(retry, base))
            raise kopf.TemporaryError(f"supervising {name} failed: {exc!r}", delay=delay) from exc


async def _supervise(
    memo: kopf.Memo,
    key: Key,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    wakeup: asyncio.Event,
    logger: kopf.Logger,
) -> None:
    config: OperatorConfig = memo.config
    namespace, name = key
    cadence = Cadence.start(
        memo.scheduler,
        key,
        resync=config.resync_seconds,
        progress=config.progress_interval_seconds,
    )
    while not stopped:
        status = StoredTrainingSessionStatus.model_validate(body.get("status") or {})
        if status.phase in TERMINAL_PHASES:
            remaining = ttl_remaining(body.get("spec") or {}, status, _now())
            if remaining is None:
                return  # nothing left to do for a finished session
            await stopped.wait(remaining)
            if not stopped:
                logger.info(f"session {name} finished; deleting it (ttlSecondsAfterFinished)")
                await memo.kube.delete_session(namespace, name)
            return
        running = status.phase == Phase.RUNNING
        del status  # not kept across the nap: thousands of daemons each holding one add up
        await nap(stopped, wakeup, cadence.wait(running))
        if stopped:
            return
        action = cadence.next(running)
        if action is Action.SYNC:
            if await sync(memo, namespace, name, logger, trigger="timer") is None:
                return  # gone or being deleted
        elif action is Action.PROGRESS:
            await _track_progress(memo, body, logger)


async def _track_progress(
    memo: kopf.Memo, body: kopf.Body, logger: logging.Logger | kopf.Logger
) -> None:
    """currentEpoch, progress, latestMetrics and bestCheckpoint from Redis, only on change."""
    kube: SessionKube = memo.kube
    session = StoredTrainingSession.model_validate(body)
    meta = session.metadata
    latest, best, _ok = await _telemetry(memo, meta.name, logger)
    fields: dict[str, Any] = {}
    if latest:
        fields.update(telemetry_fields(latest, total_epochs(session.spec)))
    if best:
        fields["bestCheckpoint"] = best
    diff = status_diff(dict(body.get("status") or {}), fields)
    if not diff:
        return
    try:
        await kube.patch_session_status(
            meta.namespace, meta.name, diff, resource_version=meta.resource_version
        )
    except ApiException as exc:
        if exc.status not in (404, 409):
            raise  # 409: the CR changed since kopf's view; the next tick catches up


@kopf.on.delete(GROUP, VERSION, PLURAL, retries=5, backoff=2.0)
async def finalize(
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """The session's Redis keys go with it; its checkpoints too when the spec asks."""
    memo.locks.pop((namespace or "default", name), None)
    memo.scheduler.clear((namespace or "default", name))
    telemetry: Telemetry = memo.telemetry
    try:
        removed = await telemetry.delete_session(name)
    except Exception as exc:
        raise kopf.TemporaryError(f"Redis unavailable: {exc}", delay=2.0) from exc
    logger.info(f"removed {removed} Redis key(s) of {name}")
    checkpoint = StoredTrainingSessionSpec.model_validate(spec).checkpoint
    if checkpoint and checkpoint.delete_on_finalize:
        config: OperatorConfig = memo.config
        deleted = await delete_checkpoints(
            name,
            endpoint=config.s3_endpoint,
            bucket=config.s3_bucket,
            region=config.s3_region,
            access=config.s3_access_key,
            secret=config.s3_secret_key,
        )
        logger.info(f"deleted {deleted} checkpoint object(s) of {name}")
