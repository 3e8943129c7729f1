"""kopf handlers of ModelServers: every trigger (an event of the ModelServer or of one of its
pods, a requeue, a periodic resync) runs the same `sync_server`: resolve the checkpoint, read
the pods, `serving.plan`, apply, repeat until nothing is left to do."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, cast

import boto3
import kopf
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from pivot_operator import metrics
from pivot_operator.config import OperatorConfig
from pivot_operator.kube import ServingKube
from pivot_operator.pods import owned_by
from pivot_operator.serving import (
    Resolved,
    ServerPod,
    build_server_pod,
    build_service,
    plan,
    revision_of,
)
from pivot_operator.status import status_diff
from pivot_schema import storage
from pivot_schema.crd import GROUP, LABEL_MANAGED_BY, MANAGED_BY, VERSION, StoredTrainingSession
from pivot_schema.modelserver import (
    CHECKPOINT_BEST,
    CHECKPOINT_LATEST,
    LABEL_MODEL_SERVER,
    MS_PLURAL,
    StoredModelServer,
    parse_s3_uri,
)

MAX_STEPS = 6
Key = tuple[str, str]


class CheckpointResolver:
    """A ModelServer's source -> the checkpoint in S3 (id, URI, the sha256 its manifest
    records). boto3 blocks: its calls run in a thread."""

    def __init__(self, config: OperatorConfig, kube: ServingKube) -> None:
        self._config = config
        self._kube = kube
        self._s3: Any = None

    def _client(self) -> Any:
        if self._s3 is None:
            self._s3 = boto3.client(
                "s3",
                endpoint_url=self._config.s3_endpoint or None,
                region_name=self._config.s3_region,
                aws_access_key_id=self._config.s3_access_key or None,
                aws_secret_access_key=self._config.s3_secret_key or None,
                config=BotoConfig(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10),
            )
        return self._s3

    def _read(self, key: str) -> bytes | None:
        try:
            body = self._client().get_object(Bucket=self._config.s3_bucket, Key=key)["Body"]
            return bytes(body.read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    async def resolve(self, server: StoredModelServer) -> tuple[Resolved | None, str | None]:
        source = server.spec.source
        if source.uri is not None:
            _bucket, key = parse_s3_uri(source.uri)
            named = source.checkpoint not in (None, CHECKPOINT_BEST, CHECKPOINT_LATEST)
            ckpt = source.checkpoint if named else PurePosixPath(key).parent.name
            return Resolved(ckpt or key, source.uri, source.sha256 or ""), None
        session_id = source.session or ""
        wanted = source.checkpoint or CHECKPOINT_BEST
        try:
            if wanted == CHECKPOINT_BEST:
                obj = await self._kube.get_session(server.metadata.namespace, session_id)
                if obj is None:
                    return None, f"session {session_id} not found"
                best = StoredTrainingSession.model_validate(obj).status.best_checkpoint
                if best is None or not best.id:
                    return None, f"session {session_id} has no best checkpoint yet"
                ckpt = best.id
            elif wanted == CHECKPOINT_LATEST:
                latest = await asyncio.to_thread(self._read, storage.latest_key(session_id))
                if not latest:
                    return None, f"session {session_id} has no checkpoint yet"
                ckpt = latest.decode().strip()
            else:
                ckpt = wanted
            raw = await asyncio.to_thread(self._read, storage.manifest_key(session_id, ckpt))
        except (ClientError, BotoCoreError) as exc:
            return None, f"S3 unavailable while resolving {session_id}/{wanted}: {exc}"
        if raw is None:
            return None, f"checkpoint {ckpt} of session {session_id} not found"
        try:
            manifest = storage.CheckpointManifest.model_validate_json(raw)
        except ValidationError:
            return None, f"checkpoint {ckpt} of session {session_id} has an unreadable manifest"
        uri = f"s3://{self._config.s3_bucket}/{manifest.object_key}"
        return Resolved(manifest.checkpoint_id, uri, manifest.sha256), None


def _now() -> datetime:
    return datetime.now(UTC)


def _post_events(obj: dict[str, Any], events: list[tuple[str, str, str]], logger: Any) -> None:
    for etype, reason, message in events:
        kopf.event(kopf.Body(cast(kopf.RawBody, obj)), type=etype, reason=reason, message=message)
        (logger.warning if etype == "Warning" else logger.info)(
            f"model server {obj['metadata']['name']}: {reason}: {message}"
        )


def _requeue(memo: kopf.Memo, key: Key, delay: float, logger: Any) -> None:
    """Sync `key` again after `delay` (one pending timer per server)."""
    timers: dict[Key, asyncio.TimerHandle] = memo.serving_timers
    pending = timers.get(key)
    if pending is not None:
        pending.cancel()
    loop = asyncio.get_running_loop()

    def fire() -> None:
        timers.pop(key, None)
        task = loop.create_task(sync_or_retry(memo, key, logger, trigger="requeue"))
        memo.serving_tasks.add(task)
        task.add_done_callback(memo.serving_tasks.discard)

    timers[key] = loop.call_later(delay, fire)


async def sync_server(memo: kopf.Memo, key: Key, logger: Any) -> None:
    namespace, name = key
    kube: ServingKube = memo.kube
    config: OperatorConfig = memo.config
    resolver: CheckpointResolver = memo.resolver
    requeue: float | None = None
    async with memo.serving_locks.setdefault(key, asyncio.Lock()):
        for _step in range(MAX_STEPS):
            obj = await kube.get_model_server(namespace, name)
            if obj is None:
                return
            try:
                server = StoredModelServer.model_validate(obj)
            except ValidationError as exc:
                logger.warning(f"model server {name}: invalid spec: {exc}")
                return
            if server.metadata.deletion_timestamp:
                return
            pods = [
                ServerPod.from_pod(p)
                for p in await kube.list_server_pods(namespace, name)
                if owned_by(p, server.metadata.uid)
            ]
            resolved, error = await resolver.resolve(server)
            revision = revision_of(server, resolved, config) if resolved else None
            step = plan(
                server, pods, _now(), revision=revision, resolved=resolved, resolve_error=error
            )
            requeue = step.requeue_after
            if key not in memo.serving_services:
                await kube.create_service(namespace, build_service(server))
                memo.serving_services.add(key)
            acted = False
            for _ in range(step.create):
                assert resolved is not None and revision is not None
                manifest = build_server_pod(server, config, revision, resolved)
                if await kube.create_pod(namespace, manifest) is not None:
                    metrics.PODS_CREATED.inc()
                    logger.info(f"model server {name}: created pod {manifest['metadata']['name']}")
                acted = True
            for pod_name in step.delete:
                await kube.delete_pod(namespace, pod_name)
                logger.info(f"model server {name}: deleted pod {pod_name}")
                acted = True
            diff = status_diff(dict(obj.get("status") or {}), step.status)
            if diff:
                try:
                    patched = await kube.patch_model_server_status(
                        namespace, name, diff, resource_version=server.metadata.resource_version
                    )
                except ApiException as exc:
                    if exc.status == 409:
                        continue  # it moved on since we read it: look again
                    raise
                _post_events(patched, step.events, logger)
            if not acted:
                break
    if requeue is not None:
        _requeue(memo, key, requeue, logger)


async def sync_or_retry(memo: kopf.Memo, key: Key, logger: Any, trigger: str) -> None:
    metrics.RECONCILES.labels(f"modelserver-{trigger}").inc()
    try:
        await sync_server(memo, key, logger)
    except Exception as exc:
        metrics.ERRORS.labels(f"modelserver-{trigger}").inc()
        logger.warning(f"sync of model server {key[1]} failed, retrying: {exc!r}")
        _requeue(memo, key, memo.config.backoff_base_seconds, logger)


def setup(memo: kopf.Memo) -> None:
    """The serving state in the operator's memo (called from the startup handler)."""
    memo.resolver = CheckpointResolver(memo.config, memo.kube)
    memo.serving_locks = {}
    memo.serving_timers = {}
    memo.serving_tasks = set()
    memo.serving_services = set()


@kopf.on.event(GROUP, VERSION, MS_PLURAL)
async def model_server_event(
    event: kopf.RawEvent,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    key = (namespace or "default", name)
    if event.get("type") == "DELETED":
        # Its pods and Service go with it (owner references); forget what we held.
        memo.serving_locks.pop(key, None)
        memo.serving_services.discard(key)
        timer = memo.serving_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        return
    await sync_or_retry(memo, key, logger, trigger="event")


@kopf.on.event(
    "", "v1", "pods", labels={LABEL_MODEL_SERVER: kopf.PRESENT, LABEL_MANAGED_BY: MANAGED_BY}
)
async def server_pod_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """A server pod's readiness, exit or deletion moves its ModelServer on."""
    if event.get("type") == "ADDED":
        return  # made by a sync that already counted it
    meta = body.get("metadata") or {}
    server = (meta.get("labels") or {}).get(LABEL_MODEL_SERVER)
    if server:
        key = (meta.get("namespace") or "default", server)
        await sync_or_retry(memo, key, logging.getLogger("pivot.serving"), trigger="pod")
