"""The SDK's methods, written once for both clients (see pivot_client._api): each builds its
request from the endpoint's generated `Operation` and hands it to the client's transport."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, Unpack

import httpx

from pivot_client._api import APIClient, C, H, Resource, endpoint, streaming
from pivot_client._base import (
    RULE_FIELDS,
    SESSION_FIELDS,
    ProgressCallback,
    ProgressReader,
    body_of,
    connection_error,
    drop_none,
    metric_record,
)
from pivot_client._exceptions import (
    APIConnectionError,
    TrainingFailedError,
    TrainingStoppedError,
    WaitTimeoutError,
)
from pivot_client._generated import operations as ops
from pivot_client._live import LiveStream
from pivot_client._operation import Files, Operation, R
from pivot_client.types import (
    Alert,
    AlertList,
    AlertRule,
    AlertRuleList,
    AlertRuleSpec,
    CheckpointList,
    ConfigList,
    CreatedSession,
    DeploySpec,
    Health,
    LiveEvent,
    LiveMetrics,
    Message,
    MetricHistory,
    MetricRecord,
    ModelDeleted,
    ModelDetail,
    ModelList,
    Notification,
    NotificationList,
    PredictResponse,
    Resources,
    ResourceSpec,
    Session,
    SessionEvents,
    SessionGpuHistory,
    SessionMetrics,
    SessionPage,
    SessionSummary,
    StartedSession,
    StepHistory,
    StoppedSession,
    TolerationSpec,
    UploadedCheckpoint,
    Webhook,
    WebhookCreated,
    WebhookDeadLetterList,
    WebhookDeliveryList,
    WebhookList,
    WebhookRedelivered,
    WebhookTestResult,
    WhoAmI,
)

_FILENAME = re.compile(r"filename=\"([^\"/\\]+)\"")


class BaseClient(APIClient[H]):
    """Sessions, metrics, live streams and monitoring, plus the endpoint groups
    (`checkpoints`, `alerts`, `webhooks`, `notifications`)."""

    @functools.cached_property
    def checkpoints(self) -> Checkpoints[Self]:
        return Checkpoints(self)

    @functools.cached_property
    def alerts(self) -> Alerts[Self]:
        return Alerts(self)

    @functools.cached_property
    def webhooks(self) -> Webhooks[Self]:
        return Webhooks(self)

    @functools.cached_property
    def notifications(self) -> Notifications[Self]:
        return Notifications(self)

    @functools.cached_property
    def models(self) -> Models[Self]:
        return Models(self)

    @endpoint
    async def deploy_model(self, name: str, **spec: Unpack[DeploySpec]) -> ModelDetail:
        """Serve a checkpoint: `models.deploy`."""
        return await _deploy(self, name, spec)

    @endpoint
    async def predict(
        self, name: str, images: Sequence[ImageInput], *, return_mask: bool = False
    ) -> PredictResponse:
        """Lesion candidates in each image: `models.predict`."""
        return await _predict(self, name, images, return_mask=return_mask)

    # -- sessions -----------------------------------------------------------------------------

    @endpoint
    async def create_session(
        self,
        *,
        config_path: str | None = None,
        config: Mapping[str, Any] | None = None,
        session_name: str | None = None,
        tags: list[str] | None = None,
        resources: ResourceSpec | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Sequence[TolerationSpec] | None = None,
        replicas: int | None = None,
    ) -> CreatedSession:
        """A new session (status `created`) from a config file on the server or inline.

        `resources` (`{"gpu": 1, "cpu": "8", "memory": "32Gi"}`) is what every trainer pod
        gets; `node_selector` and `tolerations` choose its nodes; `replicas` > 1 makes a
        distributed session of that many pods. The server validates them as the CRD does."""
        body = body_of(locals(), SESSION_FIELDS)
        return await self._call(ops.create_session, json=body)

    @endpoint
    async def start_training(self, session_id: str) -> StartedSession:
        return await self._call(ops.start_session, path={"session_id": session_id})

    @endpoint
    async def stop_training(self, session_id: str) -> StoppedSession:
        return await self._call(ops.stop_session, path={"session_id": session_id})

    @endpoint
    async def get_session(self, session_id: str) -> Session:
        return await self._call(ops.get_session, path={"session_id": session_id})

    @streaming
    async def list_sessions(
        self, *, status: str | None = None, page_size: int = 50
    ) -> AsyncGenerator[SessionSummary, None]:
        """Every session (newest first), fetched a page at a time as the iterator advances."""
        offset, seen = 0, set()
        while True:
            query = {"status": status, "limit": page_size, "offset": offset}
            page = await self._call(ops.list_sessions, query=query)
            for item in page.sessions:
                # New sessions shift offset pages: skip one already given.
                if item.session_id not in seen:
                    seen.add(item.session_id)
                    yield item
            offset += len(page.sessions)
            if not page.sessions or offset >= page.total:
                return

    @endpoint
    async def list_sessions_page(
        self, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> SessionPage:
        query = {"status": status, "limit": limit, "offset": offset}
        return await self._call(ops.list_sessions, query=query)

    # -- metrics ------------------------------------------------------------------------------

    @endpoint
    async def get_metrics(
        self, session_id: str, *, metric_name: str | None = None, limit: int | None = None
    ) -> SessionMetrics:
        query = {"metric_name": metric_name, "limit": limit}
        return await self._call(ops.session_metrics, path={"session_id": session_id}, query=query)

    @endpoint
    async def metric_history(
        self,
        session_id: str,
        *,
        metric_name: str | None = None,
        start_epoch: int | None = None,
        end_epoch: int | None = None,
        max_points: int | None = None,
    ) -> MetricHistory:
        """An epoch-level metric (default val_loss) by epoch; `max_points` downsamples."""
        bounds = {"start_epoch": start_epoch, "end_epoch": end_epoch}
        return await self._history(ops.metric_history, session_id, metric_name, max_points, bounds)

    @endpoint
    async def step_history(
        self,
        session_id: str,
        *,
        metric_name: str | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        max_points: int | None = None,
    ) -> StepHistory:
        """A step-level metric (default train_loss) by global step; `max_points` downsamples."""
        bounds = {"start_step": start_step, "end_step": end_step}
        return await self._history(ops.step_history, session_id, metric_name, max_points, bounds)

    async def _history(
        self,
        operation: Operation[R],
        session_id: str,
        metric_name: str | None,
        max_points: int | None,
        bounds: dict[str, int | None],
    ) -> R:
        """A range of one series, downsampled to `max_points` (min and max kept) if given."""
        query = {"metric_name": metric_name, **bounds, "max_points": max_points}
        return await self._call(operation, path={"session_id": session_id}, query=query)

    @streaming
    def stream_events(
        self, session_id: str, *, last_event_id: str | None = None, max_reconnects: int = 5
    ) -> LiveStream[LiveEvent]:
        """Every live event (`metrics`, `status`, `checkpoint`) until the session ends."""
        return LiveStream(self, session_id, lambda e: e, last_event_id, max_reconnects)

    @streaming
    def stream_metrics(
        self, session_id: str, *, last_event_id: str | None = None, max_reconnects: int = 5
    ) -> LiveStream[LiveMetrics]:
        """Epoch records as they are written, from the first (or after `last_event_id`),
        ending when the session ends. A dropped connection resumes where it broke off:
        no record is lost or given twice. Use it in a `with` block to close it early."""
        return LiveStream(
            self,
            session_id,
            lambda e: metric_record(e) if e.event == "metrics" else None,
            last_event_id,
            max_reconnects,
        )

    @endpoint
    async def wait_for_completion(
        self,
        session_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline for polling, not I/O
        poll_interval: float = 1.0,
    ) -> MetricRecord:
        """Block until the session completes; the final epoch's metrics. Raises
        TrainingFailedError (TrainingStoppedError) with the reason if it fails (is stopped),
        WaitTimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        path = {"session_id": session_id}
        while True:
            session = await self._call(ops.get_session, path=path)
            if session.finished:
                check_outcome(session)
                query = {"limit": 1}
                records = (await self._call(ops.session_metrics, path=path, query=query)).metrics
                return records[-1] if records else fallback_metrics(session)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"session {session_id} still {session.status} after {timeout}s"
                )
            await self._pause(poll_interval)

    # -- what Kubernetes knows of a session -----------------------------------------------------

    @endpoint
    async def session_events(self, session_id: str) -> SessionEvents:
        """The Kubernetes Events of the session and its pods (scheduling, retries...), oldest
        first."""
        return await self._call(ops.session_events, path={"session_id": session_id})

    @endpoint
    async def logs(self, session_id: str, *, tail: int | None = None, rank: int | str = 0) -> str:
        """The trainer's log as it is now: whole, or its last `tail` lines; `rank="all"`
        gives every rank's lines, each prefixed `[rank N] `."""
        query = {"tail": tail, "rank": str(rank)}
        request = ops.session_logs.request(path={"session_id": session_id}, query=query)
        response = await self._send(request)
        return response.text

    @streaming
    async def follow_logs(
        self, session_id: str, *, tail: int | None = None, rank: int | str = 0
    ) -> AsyncGenerator[str, None]:
        """The trainer's log lines as they are written (from the start, or the last `tail`),
        through a retried attempt's new pod, until the session ends."""
        query = {"tail": tail, "rank": str(rank), "follow": "true"}
        # A trainer can be quiet for long (a slow epoch, a pod waiting for a GPU).
        quiet_ok = httpx.Timeout(30.0, read=None)
        request = ops.session_logs.request(
            path={"session_id": session_id}, query=query, timeout=quiet_ok
        )
        response = await self._send(request, stream=True)
        try:
            async for line in self._lines(response):
                yield line
        except httpx.TransportError as exc:
            raise connection_error(exc) from exc
        finally:
            await self._release(response)

    @endpoint
    async def configs(self) -> ConfigList:
        """The training configs on the server a session can be created from (`config_path`),
        each as validated, or why it cannot be used."""
        return await self._call(ops.get_configs)

    @endpoint
    async def whoami(self) -> WhoAmI:
        """The key this client uses: its name and scope (read, write, admin)."""
        return await self._call(ops.whoami)

    # -- monitoring ---------------------------------------------------------------------------

    @endpoint
    async def session_gpu(self, session_id: str, *, limit: int | None = None) -> SessionGpuHistory:
        """The session trainer's latest GPU telemetry samples, oldest first."""
        path, query = {"session_id": session_id}, {"limit": limit}
        return await self._call(ops.session_gpu, path=path, query=query)

    @endpoint
    async def resources(self) -> Resources:
        return await self._call(ops.resources)

    @endpoint
    async def health(self) -> Health:
        return await self._call(ops.health)


def check_outcome(session: Session) -> None:
    if session.status == "stopped":
        raise TrainingStoppedError(session.session_id, session.status, session.message)
    if session.status != "completed":
        raise TrainingFailedError(session.session_id, session.status, session.message)


def fallback_metrics(session: Session) -> MetricRecord:
    latest = session.latest_metrics or {}
    return MetricRecord.model_validate({"epoch": session.current_epoch or 0, **latest})


class Checkpoints(Resource[C]):
    @endpoint
    async def list(
        self, *, session_id: str | None = None, limit: int | None = None
    ) -> CheckpointList:
        query = {"session_id": session_id, "limit": limit}
        return await self._client._call(ops.list_checkpoints, query=query)

    @endpoint
    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        session_id: str,
        epoch: int,
        metrics: Mapping[str, float] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> UploadedCheckpoint:
        """Upload a checkpoint file, streamed from disk; `on_progress(done, total)`."""
        file_path = Path(path)
        total = os.stat(file_path).st_size  # one local syscall: not worth a thread
        data = {"session_id": session_id, "epoch": str(epoch)}
        if metrics is not None:
            data["metrics"] = json.dumps(dict(metrics))
        # httpx's multipart encoder reads the file in 64 KiB chunks: local-disk reads that
        # size do not stall an event loop noticeably, and both clients share this path.
        with file_path.open("rb") as fh:  # noqa: ASYNC230

            def files() -> Files:
                fh.seek(0)  # a retry after a failed connect sends the file from the start
                reader = ProgressReader(fh, total, on_progress)
                return {"file": (file_path.name, reader, "application/octet-stream")}

            request = ops.upload_checkpoint.request(data=data, files=files)
            response = await self._client._send(request)
        return ops.upload_checkpoint.parse(response)

    @endpoint
    async def download(
        self,
        checkpoint_id: str,
        path: str | os.PathLike[str],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Stream a checkpoint to `path` (a file, or a directory to put it in); checked
        against the server's SHA-256 and renamed into place only when whole."""
        client = self._client
        request = ops.download_checkpoint.request(path={"checkpoint_id": checkpoint_id})
        response = await client._send(request, stream=True)
        try:
            target = download_target(Path(path), checkpoint_id, response)
            partial = target.with_name(target.name + ".part")
            total = int(response.headers.get("content-length") or 0)
            digest, done = hashlib.sha256(), 0
            try:
                with partial.open("wb") as out:
                    async for chunk in client._chunks(response, 1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if on_progress is not None:
                            on_progress(done, total or done)
                verify_download(checkpoint_id, response, digest.hexdigest())
                partial.replace(target)
            except httpx.TransportError as exc:
                raise connection_error(exc) from exc
            finally:
                partial.unlink(missing_ok=True)
        finally:
            await client._release(response)
        return target

    @endpoint
    async def delete(self, checkpoint_id: str) -> Message:
        path = {"checkpoint_id": checkpoint_id}
        return await self._client._call(ops.delete_checkpoint, path=path)


def download_target(path: Path, checkpoint_id: str, response: httpx.Response) -> Path:
    if not path.is_dir():
        return path
    match = _FILENAME.search(response.headers.get("content-disposition", ""))
    return path / (match.group(1) if match else f"{checkpoint_id}.pth")


def verify_download(checkpoint_id: str, response: httpx.Response, sha256: str) -> None:
    expected = response.headers.get("x-checkpoint-sha256")
    if expected and expected.lower() != sha256:
        raise APIConnectionError(f"checkpoint {checkpoint_id} arrived corrupt (sha256 mismatch)")


class Alerts(Resource[C]):
    @endpoint
    async def list(
        self,
        *,
        status: str | None = None,
        severity: str | None = None,
        session_id: str | None = None,
        limit: int | None = None,
    ) -> AlertList:
        """Alerts, newest first; `status` is active, acknowledged or resolved."""
        query = {"status": status, "severity": severity, "session_id": session_id, "limit": limit}
        return await self._client._call(ops.list_alerts, query=query)

    @endpoint
    async def get(self, alert_id: str) -> Alert:
        return await self._client._call(ops.get_alert, path={"alert_id": alert_id})

    @endpoint
    async def acknowledge(
        self, alert_id: str, *, acknowledged_by: str, notes: str | None = None
    ) -> Alert:
        body = drop_none({"acknowledged_by": acknowledged_by, "notes": notes})
        path = {"alert_id": alert_id}
        return await self._client._call(ops.acknowledge_alert, path=path, json=body)

    @endpoint
    async def resolve(
        self, alert_id: str, *, resolved_by: str | None = None, notes: str | None = None
    ) -> Alert:
        body = drop_none({"resolved_by": resolved_by, "notes": notes})
        path = {"alert_id": alert_id}
        return await self._client._call(ops.resolve_alert, path=path, json=body)

    @endpoint
    async def create_rule(
        self,
        *,
        name: str,
        metric: str,
        condition: str,
        threshold: float | None = None,
        severity: str = "medium",
        enabled: bool = True,
        session_id: str | None = None,
        tag: str | None = None,
        for_epochs: int | None = None,
        mode: str | None = None,
        window_s: float | None = None,
        action: str | None = None,
    ) -> AlertRule:
        """A rule on a system metric (cpu_percent...) or a training metric (val_loss...).
        Conditions: greater_than, less_than, equals, not_equals (with `threshold`), is_nan,
        no_improvement_for (`for_epochs`, `mode`) and stalled (`window_s`)."""
        return await self._client._call(ops.create_rule, json=body_of(locals(), RULE_FIELDS))

    @endpoint
    async def list_rules(self) -> AlertRuleList:
        return await self._client._call(ops.list_rules)

    @endpoint
    async def get_rule(self, rule_id: str) -> AlertRule:
        return await self._client._call(ops.get_rule, path={"rule_id": rule_id})

    @endpoint
    async def update_rule(
        self,
        rule_id: str,
        *,
        name: str | None = None,
        metric: str | None = None,
        condition: str | None = None,
        threshold: float | None = None,
        severity: str | None = None,
        enabled: bool | None = None,
        session_id: str | None = None,
        tag: str | None = None,
        for_epochs: int | None = None,
        mode: str | None = None,
        window_s: float | None = None,
        action: str | None = None,
    ) -> AlertRule:
        """Change the given fields (e.g. `enabled=False`); the others stay."""
        body = body_of(locals(), RULE_FIELDS)
        return await self._client._call(ops.update_rule, path={"rule_id": rule_id}, json=body)

    @endpoint
    async def replace_rule(self, rule_id: str, **rule: Unpack[AlertRuleSpec]) -> AlertRule:
        """Replace the whole rule with the fields `create_rule` takes; those not given take
        their defaults."""
        body = body_of(rule, RULE_FIELDS)
        return await self._client._call(ops.replace_rule, path={"rule_id": rule_id}, json=body)

    @endpoint
    async def delete_rule(self, rule_id: str) -> Message:
        return await self._client._call(ops.delete_rule, path={"rule_id": rule_id})


class Webhooks(Resource[C]):
    @endpoint
    async def create(
        self, *, url: str, events: list[str], secret: str | None = None
    ) -> WebhookCreated:
        body = drop_none({"url": url, "events": events, "secret": secret})
        return await self._client._call(ops.create_webhook, json=body)

    @endpoint
    async def test(self, webhook_id: str) -> WebhookTestResult:
        return await self._client._call(ops.test_webhook, path={"webhook_id": webhook_id})

    @endpoint
    async def list(self) -> WebhookList:
        return await self._client._call(ops.list_webhooks)

    @endpoint
    async def get(self, webhook_id: str) -> Webhook:
        return await self._client._call(ops.get_webhook, path={"webhook_id": webhook_id})

    @endpoint
    async def update(self, webhook_id: str, *, status: str) -> Webhook:
        path, body = {"webhook_id": webhook_id}, {"status": status}
        return await self._client._call(ops.update_webhook, path=path, json=body)

    @endpoint
    async def delete(self, webhook_id: str) -> Message:
        return await self._client._call(ops.delete_webhook, path={"webhook_id": webhook_id})

    @endpoint
    async def deliveries(self, webhook_id: str, *, limit: int | None = None) -> WebhookDeliveryList:
        path, query = {"webhook_id": webhook_id}, {"limit": limit}
        return await self._client._call(ops.list_deliveries, path=path, query=query)

    @endpoint
    async def dead_letters(
        self, webhook_id: str, *, limit: int | None = None
    ) -> WebhookDeadLetterList:
        path, query = {"webhook_id": webhook_id}, {"limit": limit}
        return await self._client._call(ops.list_dead_letters, path=path, query=query)

    @endpoint
    async def redeliver(
        self, webhook_id: str, *, event_id: str | None = None
    ) -> WebhookRedelivered:
        """Queue one dead letter again, or all of them when `event_id` is not given."""
        if event_id:
            path = {"webhook_id": webhook_id, "event_id": event_id}
            return await self._client._call(ops.redeliver_one, path=path)
        return await self._client._call(ops.redeliver_all, path={"webhook_id": webhook_id})


ImageInput = str | os.PathLike[str] | bytes | Any  # a path, PNG/.npy bytes, or a 2-D array


def _image_part(index: int, image: ImageInput) -> tuple[str, tuple[str, bytes, str]]:
    """One `file` part: PNG and .npy bytes as they are, a path read, an array as .npy."""
    if isinstance(image, bytes):
        data = image
    elif isinstance(image, (str, os.PathLike)):
        data = Path(image).read_bytes()
    elif hasattr(image, "__array__"):
        import io

        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(image), allow_pickle=False)
        data = buffer.getvalue()
    else:
        raise TypeError(f"image {index}: a path, bytes or an array, not {type(image).__name__}")
    png = data.startswith(b"\x89PNG")
    name = f"image{index}.png" if png else f"image{index}.npy"
    return "file", (name, data, "image/png" if png else "application/octet-stream")


async def _deploy(client: APIClient[Any], name: str, spec: DeploySpec) -> ModelDetail:
    # As a signature would: a misspelt argument is a TypeError, not a 422 from the server.
    if unknown := spec.keys() - (DeploySpec.__required_keys__ | DeploySpec.__optional_keys__):
        raise TypeError(f"deploy() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    fields: dict[str, Any] = {"replicas": 1, **spec}
    batching = drop_none({k: fields.pop(k, None) for k in ("max_batch_size", "max_delay_ms")})
    body = drop_none({"name": name, **fields, "batching": batching or None})
    return await client._call(ops.deploy_model, json=body)


async def _predict(
    client: APIClient[Any], name: str, images: Sequence[ImageInput], *, return_mask: bool
) -> PredictResponse:
    parts = [_image_part(i, image) for i, image in enumerate(images)]
    if not parts:
        raise ValueError("predict needs at least one image")
    query = {"return_mask": "true" if return_mask else None}
    request = ops.predict.request(path={"name": name}, query=query, files=lambda: parts)
    return ops.predict.parse(await client._send(request))


class Models(Resource[C]):
    """Model servers: deploy a checkpoint, scale it, roll it to another, predict."""

    @endpoint
    async def deploy(self, name: str, **spec: Unpack[DeploySpec]) -> ModelDetail:
        """Serve a session's checkpoint (`best`, `latest` or an id) or an S3 file with its
        SHA-256, on `replicas` pods (1 unless given) that batch requests arriving together:
        `DeploySpec` names the arguments."""
        return await _deploy(self._client, name, spec)

    @endpoint
    async def list(self) -> ModelList:
        return await self._client._call(ops.list_models)

    @endpoint
    async def get(self, name: str) -> ModelDetail:
        return await self._client._call(ops.get_model, path={"name": name})

    @endpoint
    async def update(
        self, name: str, *, replicas: int | None = None, checkpoint: str | None = None
    ) -> ModelDetail:
        """Scale, or serve another checkpoint: new pods are Ready before old ones go."""
        body = drop_none({"replicas": replicas, "checkpoint": checkpoint})
        return await self._client._call(ops.update_model, path={"name": name}, json=body)

    @endpoint
    async def delete(self, name: str) -> ModelDeleted:
        return await self._client._call(ops.delete_model, path={"name": name})

    @endpoint
    async def predict(
        self, name: str, images: Sequence[ImageInput], *, return_mask: bool = False
    ) -> PredictResponse:
        """Lesion candidates (centre, probability, area) in each image: PNG (8 or 16 bit
        grayscale) or .npy bytes, paths to such files, or 2-D arrays."""
        return await _predict(self._client, name, images, return_mask=return_mask)


class Notifications(Resource[C]):
    @endpoint
    async def list(
        self,
        *,
        type: str | None = None,
        priority: str | None = None,
        unread: bool | None = None,
        limit: int | None = None,
    ) -> NotificationList:
        """Newest first. `unread=True`: unread ones only; `unread=False`: read ones only."""
        query = {
            "type": type,
            "priority": priority,
            "unread": None if unread is None else str(unread).lower(),
            "limit": limit,
        }
        return await self._client._call(ops.list_notifications, query=query)

    @endpoint
    async def mark_read(self, notification_id: str) -> Notification:
        path = {"notification_id": notification_id}
        return await self._client._call(ops.mark_read, path=path)

    @endpoint
    async def clear(self) -> Message:
        return await self._client._call(ops.clear_notifications)
