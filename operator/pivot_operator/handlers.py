"""kopf handlers: thin. They read kwargs, call the pure builders/status functions, make the
API calls through `Kube`, and patch status only when it changed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from pivot_operator.builders import build_trainer_pod, trainer_pod_name
from pivot_operator.config import OperatorConfig
from pivot_operator.kube import Kube, make_api_client
from pivot_operator.status import (
    PodView,
    derive_status,
    status_diff,
    telemetry_fields,
    total_epochs,
)
from pivot_operator.telemetry import Telemetry
from pivot_schema.crd import (
    GROUP,
    LABEL_MANAGED_BY,
    LABEL_SESSION,
    MANAGED_BY,
    PLURAL,
    TERMINAL_PHASES,
    VERSION,
    Phase,
)

# Read once at import: decorator arguments (the timer interval) need it before startup.
CONFIG = OperatorConfig.from_env()
ANNOTATION_PREFIX = "pivot.dev"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Progress and the diff base live in annotations: status is ours and the CRD prunes
    # unknown status fields, so kopf's default `status.kopf` would be dropped.
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
    memo.config = CONFIG
    memo.kube = Kube(await make_api_client(CONFIG.kubeconfig))
    memo.telemetry = Telemetry(CONFIG.redis_url)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.telemetry.close()
    await memo.kube.api.close()


async def _latest(
    memo: kopf.Memo, name: str, logger: logging.Logger | kopf.Logger
) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] | None = await memo.telemetry.latest_epoch_record(name)
        return record
    except Exception as exc:  # telemetry is best effort: Redis down must not block scheduling
        logger.warning(f"telemetry unavailable for {name}: {exc}")
        return None


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile(
    body: kopf.Body,
    name: str,
    namespace: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Make the trainer pod match spec.suspend; re-running it never makes a second pod."""
    spec = dict(body.get("spec") or {})
    status = dict(body.get("status") or {})
    if status.get("phase") in TERMINAL_PHASES:
        return
    kube: Kube = memo.kube
    pod_name = trainer_pod_name(name)
    pod = await kube.get_pod(namespace, pod_name)

    if spec.get("suspend"):
        if pod is not None and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            logger.info(f"suspended: deleting trainer pod {pod_name}")
            await kube.delete_pod(namespace, pod_name)
            pod = await kube.get_pod(namespace, pod_name)
    else:
        if pod is None:
            manifest = build_trainer_pod(dict(body), memo.config)
            pod = await kube.create_pod(namespace, manifest) or await kube.get_pod(
                namespace, pod_name
            )
            if pod is not None:
                logger.info(f"created trainer pod {pod_name}")
        if pod is not None and (pod.get("metadata") or {}).get("deletionTimestamp"):
            raise kopf.TemporaryError("the previous trainer pod is still terminating", delay=1)

    view = PodView.from_pod(pod) if pod is not None else None
    desired = derive_status(spec, status, view, await _latest(memo, name, logger), _now())
    patch.status.update(status_diff(status, desired))


@kopf.on.event("", "v1", "pods", labels={LABEL_SESSION: kopf.PRESENT, LABEL_MANAGED_BY: MANAGED_BY})
async def mirror_pod(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Pod phase -> session status; a pod that vanished while the session should run is replaced."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    session_name = (meta.get("labels") or {}).get(LABEL_SESSION)
    if not session_name:
        return
    kube: Kube = memo.kube
    deleted = event.get("type") == "DELETED"
    for _attempt in range(5):
        session = await kube.get_session(namespace, session_name)
        if session is None:
            return
        owner_uids = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
        if session["metadata"]["uid"] not in owner_uids:
            return  # a pod of an older session with the same name
        spec = session.get("spec") or {}
        status = session.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES:
            return
        pod: dict[str, Any] | None = None if deleted else dict(body)
        if deleted and not spec.get("suspend"):
            # Deleted without the user asking (eviction, node drain): run it again; the
            # trainer resumes from its latest checkpoint.
            manifest = build_trainer_pod(session, memo.config)
            pod = await kube.create_pod(namespace, manifest) or await kube.get_pod(
                namespace, manifest["metadata"]["name"]
            )
            logger.warning(f"trainer pod of {session_name} was deleted; replaced it")
        view = PodView.from_pod(pod) if pod is not None else None
        latest = await _latest(memo, session_name, logger)
        desired = derive_status(spec, status, view, latest, _now())
        if deleted and not spec.get("suspend"):
            desired["restarts"] = int(status.get("restarts") or 0) + 1
        diff = status_diff(status, desired)
        if not diff:
            return
        try:
            await kube.patch_session_status(
                namespace,
                session_name,
                diff,
                resource_version=session["metadata"]["resourceVersion"],
            )
            if diff.get("phase") and diff["phase"] != status.get("phase"):
                logger.info(f"session {session_name}: {status.get('phase')} -> {diff['phase']}")
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
            # The session changed since we read it: read it again and recompute.


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    interval=CONFIG.progress_interval_seconds,
    initial_delay=1.0,
    field="status.phase",
    value=Phase.RUNNING.value,
)
async def track_progress(
    spec: kopf.Spec,
    status: kopf.Status,
    name: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """currentEpoch, progress and latestMetrics from the trainer's Redis stream."""
    latest = await _latest(memo, name, logger)
    if latest:
        fields = telemetry_fields(latest, total_epochs(dict(spec)))
        patch.status.update(status_diff(dict(status), fields))
