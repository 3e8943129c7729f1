"""The synchronous client, `PIVOTClient`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from pivot_client._base import (
    DEFAULT_TIMEOUT,
    STREAM_READ_TIMEOUT,
    ProgressCallback,
    ProgressReader,
    RetryPolicy,
    SSEDecoder,
    StreamState,
    api_key_from,
    base_url_from,
    connection_error,
    default_headers,
    drop_none,
    metric_record,
    rule_body,
    session_body,
)
from pivot_client._exceptions import (
    APIConnectionError,
    TrainingFailedError,
    TrainingStoppedError,
    WaitTimeoutError,
    error_from_response,
)
from pivot_client.types import (
    Alert,
    AlertList,
    AlertRule,
    AlertRuleList,
    CheckpointList,
    CreatedSession,
    Health,
    LiveEvent,
    LiveMetrics,
    Message,
    MetricHistory,
    MetricRecord,
    Notification,
    NotificationList,
    Resources,
    ResourceSpec,
    Session,
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
    WebhookDeadLetterList,
    WebhookDeliveryList,
    WebhookList,
    WebhookRedelivered,
    WebhookTestResult,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
RequestFactory = Callable[[], httpx.Request]
_FILENAME = re.compile(r"filename=\"([^\"/\\]+)\"")


class PIVOTClient:
    """A client for the PIVOT API.

        client = PIVOTClient()                     # PIVOT_URL, PIVOT_API_KEY from env
        session = client.create_session(config_path="configs/train.yaml")
        client.start_training(session.session_id)
        for record in client.stream_metrics(session.session_id):
            print(record.epoch, record["val_loss"])

    Calls retry (at most `max_retries` times, with backoff that honours Retry-After) on 429,
    503 and connection failures; a POST is repeated only when it never reached the server.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url_from(base_url)
        self.api_key = api_key_from(api_key)
        self.retry = RetryPolicy(max_retries=max_retries)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._headers = default_headers(self.api_key, headers)
        self._sleep: Callable[[float], None] = time.sleep
        self.checkpoints = Checkpoints(self)
        self.alerts = Alerts(self)
        self.webhooks = Webhooks(self)
        self.notifications = Notifications(self)

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> PIVOTClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _build(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Request:
        return self._http.build_request(
            method,
            self.base_url + path,
            params=drop_none(params or {}),
            json=json_body,
            headers={**self._headers, **(headers or {})},
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            **kwargs,
        )

    def _send(self, factory: RequestFactory, *, stream: bool = False) -> httpx.Response:
        """Send with bounded retries; the factory builds a fresh request (and body) per try."""
        attempt = 0
        while True:
            request = factory()
            try:
                response = self._http.send(request, stream=stream, follow_redirects=True)
            except httpx.TransportError as exc:
                if attempt < self.retry.max_retries and self.retry.retry_error(request.method, exc):
                    self._sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise connection_error(exc) from exc
            if response.is_success:
                return response
            if attempt < self.retry.max_retries and self.retry.retry_status(
                request.method, response.status_code
            ):
                response.close()
                self._sleep(self.retry.delay(attempt, response))
                attempt += 1
                continue
            if stream:
                response.read()
                response.close()
            raise error_from_response(response)

    def _request(self, cast_to: type[M], method: str, path: str, **kwargs: Any) -> M:
        response = self._send(lambda: self._build(method, path, **kwargs))
        return cast_to.model_validate(response.json())

    # -- sessions ---------------------------------------------------------------------------

    def create_session(
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
        body = session_body(
            config_path=config_path,
            config=config,
            session_name=session_name,
            tags=tags,
            resources=resources,
            node_selector=node_selector,
            tolerations=tolerations,
            replicas=replicas,
        )
        return self._request(CreatedSession, "POST", "/training/sessions", json_body=body)

    def start_training(self, session_id: str) -> StartedSession:
        return self._request(StartedSession, "POST", f"/training/sessions/{session_id}/start")

    def stop_training(self, session_id: str) -> StoppedSession:
        return self._request(StoppedSession, "POST", f"/training/sessions/{session_id}/stop")

    def get_session(self, session_id: str) -> Session:
        return self._request(Session, "GET", f"/training/sessions/{session_id}")

    def list_sessions(
        self, *, status: str | None = None, page_size: int = 50
    ) -> Iterator[SessionSummary]:
        """Every session (newest first), fetched a page at a time as the iterator advances."""
        offset, seen = 0, set()
        while True:
            page = self.list_sessions_page(status=status, limit=page_size, offset=offset)
            for item in page.sessions:
                # New sessions shift offset pages: skip one already given.
                if item.session_id not in seen:
                    seen.add(item.session_id)
                    yield item
            offset += len(page.sessions)
            if not page.sessions or offset >= page.total:
                return

    def list_sessions_page(
        self, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> SessionPage:
        params = {"status": status, "limit": limit, "offset": offset}
        return self._request(SessionPage, "GET", "/training/sessions", params=params)

    # -- metrics ----------------------------------------------------------------------------

    def get_metrics(
        self, session_id: str, *, metric_name: str | None = None, limit: int | None = None
    ) -> SessionMetrics:
        params = {"metric_name": metric_name, "limit": limit}
        return self._request(
            SessionMetrics, "GET", f"/training/sessions/{session_id}/metrics", params=params
        )

    def metric_history(
        self,
        session_id: str,
        *,
        metric_name: str | None = None,
        start_epoch: int | None = None,
        end_epoch: int | None = None,
    ) -> MetricHistory:
        params = {"metric_name": metric_name, "start_epoch": start_epoch, "end_epoch": end_epoch}
        return self._request(MetricHistory, "GET", f"/metrics/{session_id}/history", params=params)

    def step_history(
        self,
        session_id: str,
        *,
        metric_name: str | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        max_points: int | None = None,
    ) -> StepHistory:
        """A step-level metric (default train_loss) by global step."""
        params = {
            "metric_name": metric_name,
            "start_step": start_step,
            "end_step": end_step,
            "max_points": max_points,
        }
        return self._request(StepHistory, "GET", f"/metrics/{session_id}/steps", params=params)

    def stream_events(
        self, session_id: str, *, last_event_id: str | None = None, max_reconnects: int = 5
    ) -> EventStream[LiveEvent]:
        """Every live event (`metrics`, `status`, `checkpoint`) until the session ends."""
        return EventStream(self, session_id, lambda e: e, last_event_id, max_reconnects)

    def stream_metrics(
        self, session_id: str, *, last_event_id: str | None = None, max_reconnects: int = 5
    ) -> EventStream[LiveMetrics]:
        """Epoch records as they are written, from the first (or after `last_event_id`),
        ending when the session ends. A dropped connection resumes where it broke off:
        no record is lost or given twice. Use it in a `with` block to close it early."""
        return EventStream(
            self,
            session_id,
            lambda e: metric_record(e) if e.event == "metrics" else None,
            last_event_id,
            max_reconnects,
        )

    def wait_for_completion(
        self, session_id: str, *, timeout: float | None = None, poll_interval: float = 1.0
    ) -> MetricRecord:
        """Block until the session completes; the final epoch's metrics. Raises
        TrainingFailedError (TrainingStoppedError) with the reason if it fails (is stopped),
        WaitTimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            session = self.get_session(session_id)
            if session.finished:
                return self._final_metrics(session)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"session {session_id} still {session.status} after {timeout}s"
                )
            self._sleep(poll_interval)

    def _final_metrics(self, session: Session) -> MetricRecord:
        check_outcome(session)
        records = self.get_metrics(session.session_id, limit=1).metrics
        return records[-1] if records else fallback_metrics(session)

    # -- monitoring -------------------------------------------------------------------------

    def session_gpu(self, session_id: str, *, limit: int | None = None) -> SessionGpuHistory:
        """The session trainer's latest GPU telemetry samples, oldest first."""
        return self._request(
            SessionGpuHistory,
            "GET",
            f"/monitor/sessions/{session_id}/gpu",
            params={"limit": limit},
        )

    def resources(self) -> Resources:
        return self._request(Resources, "GET", "/monitor/resources")

    def health(self) -> Health:
        return self._request(Health, "GET", "/health")


def check_outcome(session: Session) -> None:
    if session.status == "stopped":
        raise TrainingStoppedError(session.session_id, session.status, session.message)
    if session.status != "completed":
        raise TrainingFailedError(session.session_id, session.status, session.message)


def fallback_metrics(session: Session) -> MetricRecord:
    return MetricRecord.model_validate({"epoch": session.current_epoch, **session.latest_metrics})


class EventStream(Iterator[T]):
    """An iterator over a session's Server-Sent Events that resumes after a dropped
    connection with Last-Event-ID. Closing it (or leaving its `with` block) closes the
    connection."""

    def __init__(
        self,
        client: PIVOTClient,
        session_id: str,
        convert: Callable[[LiveEvent], T | None],
        last_event_id: str | None,
        max_reconnects: int,
    ) -> None:
        self._client = client
        self._session_id = session_id
        self._convert = convert
        self._max_reconnects = max_reconnects
        self.state = StreamState(last_event_id=last_event_id)
        self._response: httpx.Response | None = None
        self._events = self._run()

    @property
    def last_event_id(self) -> str | None:
        return self.state.last_event_id

    def __next__(self) -> T:
        return next(self._events)

    def __iter__(self) -> EventStream[T]:
        return self

    def __enter__(self) -> EventStream[T]:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._events.close()
        if self._response is not None:
            self._response.close()
            self._response = None

    def _connect(self) -> httpx.Response:
        client = self._client
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT, connect=10.0)
        return client._send(
            lambda: client._build(
                "GET",
                f"/sse/training/{self._session_id}",
                headers=self.state.headers(),
                timeout=timeout,
            ),
            stream=True,
        )

    def _run(self) -> Generator[T, None, None]:
        state = self.state
        while True:
            error: Exception | None = None
            try:
                self._response = self._connect()
                decoder = SSEDecoder()
                for line in self._response.iter_lines():
                    sse = decoder.decode(line)
                    event = state.accept(sse) if sse is not None else None
                    item = self._convert(event) if event is not None else None
                    if item is not None:
                        yield item
                if state.ended:
                    return
            except (httpx.TransportError, APIConnectionError) as exc:
                error = exc
            finally:
                if self._response is not None:
                    self._response.close()
                    self._response = None
            # Cut off, or closed before the session ended: resume after the last event.
            # `failures` counts reconnects since the last event that got through.
            state.failures += 1
            if state.failures > self._max_reconnects:
                raise APIConnectionError(
                    f"live stream of {self._session_id} broke off {state.failures} times "
                    f"without progress: {error or 'closed before the session ended'}"
                ) from error
            self._client._sleep(reconnect_delay(state, self._client.retry))


def reconnect_delay(state: StreamState, retry: RetryPolicy) -> float:
    """The server's `retry:` for the first reconnect, then exponential backoff."""
    if state.reconnect_delay is not None and state.failures == 1:
        return state.reconnect_delay
    return retry.delay(state.failures - 1)


# -- resources ------------------------------------------------------------------------------


class _Resource:
    def __init__(self, client: PIVOTClient) -> None:
        self._client = client


class Checkpoints(_Resource):
    def list(self, *, session_id: str | None = None, limit: int | None = None) -> CheckpointList:
        params = {"session_id": session_id, "limit": limit}
        return self._client._request(CheckpointList, "GET", "/checkpoints", params=params)

    def upload(
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
        total = file_path.stat().st_size
        data = {"session_id": session_id, "epoch": str(epoch)}
        if metrics is not None:
            data["metrics"] = json.dumps(dict(metrics))
        client = self._client
        with file_path.open("rb") as fh:

            def build() -> httpx.Request:
                fh.seek(0)  # a retry after a failed connect sends the file from the start
                reader = ProgressReader(fh, total, on_progress)
                files = {"file": (file_path.name, reader, "application/octet-stream")}
                return client._build("POST", "/checkpoints", data=data, files=files)

            response = client._send(build)
        return UploadedCheckpoint.model_validate(response.json())

    def download(
        self,
        checkpoint_id: str,
        path: str | os.PathLike[str],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Stream a checkpoint to `path` (a file, or a directory to put it in); checked
        against the server's SHA-256 and renamed into place only when whole."""
        client = self._client
        response = client._send(
            lambda: client._build("GET", f"/checkpoints/{checkpoint_id}/download"), stream=True
        )
        try:
            target = download_target(Path(path), checkpoint_id, response)
            partial = target.with_name(target.name + ".part")
            total = int(response.headers.get("content-length") or 0)
            digest, done = hashlib.sha256(), 0
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
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
            response.close()
        return target

    def delete(self, checkpoint_id: str) -> Message:
        return self._client._request(Message, "DELETE", f"/checkpoints/{checkpoint_id}")


def download_target(path: Path, checkpoint_id: str, response: httpx.Response) -> Path:
    if not path.is_dir():
        return path
    match = _FILENAME.search(response.headers.get("content-disposition", ""))
    return path / (match.group(1) if match else f"{checkpoint_id}.pth")


def verify_download(checkpoint_id: str, response: httpx.Response, sha256: str) -> None:
    expected = response.headers.get("x-checkpoint-sha256")
    if expected and expected.lower() != sha256:
        raise APIConnectionError(f"checkpoint {checkpoint_id} arrived corrupt (sha256 mismatch)")


class Alerts(_Resource):
    def list(
        self,
        *,
        status: str | None = None,
        severity: str | None = None,
        session_id: str | None = None,
        limit: int | None = None,
    ) -> AlertList:
        """Alerts, newest first; `status` is active, acknowledged or resolved."""
        params = {"status": status, "severity": severity, "session_id": session_id, "limit": limit}
        return self._client._request(AlertList, "GET", "/alerts", params=params)

    def get(self, alert_id: str) -> Alert:
        return self._client._request(Alert, "GET", f"/alerts/{alert_id}")

    def acknowledge(
        self, alert_id: str, *, acknowledged_by: str, notes: str | None = None
    ) -> Alert:
        body = drop_none({"acknowledged_by": acknowledged_by, "notes": notes})
        return self._client._request(
            Alert, "POST", f"/alerts/{alert_id}/acknowledge", json_body=body
        )

    def resolve(
        self, alert_id: str, *, resolved_by: str | None = None, notes: str | None = None
    ) -> Alert:
        body = drop_none({"resolved_by": resolved_by, "notes": notes})
        return self._client._request(Alert, "POST", f"/alerts/{alert_id}/resolve", json_body=body)

    def create_rule(
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
        body = rule_body(locals())
        return self._client._request(AlertRule, "POST", "/alerts/rules", json_body=body)

    def list_rules(self) -> AlertRuleList:
        return self._client._request(AlertRuleList, "GET", "/alerts/rules")

    def get_rule(self, rule_id: str) -> AlertRule:
        return self._client._request(AlertRule, "GET", f"/alerts/rules/{rule_id}")

    def update_rule(
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
        body = rule_body(locals())
        return self._client._request(AlertRule, "PATCH", f"/alerts/rules/{rule_id}", json_body=body)

    def delete_rule(self, rule_id: str) -> Message:
        return self._client._request(Message, "DELETE", f"/alerts/rules/{rule_id}")


class Webhooks(_Resource):
    def create(self, *, url: str, events: list[str], secret: str | None = None) -> Webhook:
        body = drop_none({"url": url, "events": events, "secret": secret})
        return self._client._request(Webhook, "POST", "/webhooks", json_body=body)

    def test(self, webhook_id: str) -> WebhookTestResult:
        return self._client._request(WebhookTestResult, "POST", f"/webhooks/{webhook_id}/test")

    def list(self) -> WebhookList:
        return self._client._request(WebhookList, "GET", "/webhooks")

    def get(self, webhook_id: str) -> Webhook:
        return self._client._request(Webhook, "GET", f"/webhooks/{webhook_id}")

    def update(self, webhook_id: str, *, status: str) -> Webhook:
        body = {"status": status}
        return self._client._request(Webhook, "PATCH", f"/webhooks/{webhook_id}", json_body=body)

    def delete(self, webhook_id: str) -> Message:
        return self._client._request(Message, "DELETE", f"/webhooks/{webhook_id}")

    def deliveries(self, webhook_id: str, *, limit: int | None = None) -> WebhookDeliveryList:
        return self._client._request(
            WebhookDeliveryList,
            "GET",
            f"/webhooks/{webhook_id}/deliveries",
            params={"limit": limit},
        )

    def dead_letters(self, webhook_id: str, *, limit: int | None = None) -> WebhookDeadLetterList:
        return self._client._request(
            WebhookDeadLetterList,
            "GET",
            f"/webhooks/{webhook_id}/dead-letters",
            params={"limit": limit},
        )

    def redeliver(self, webhook_id: str, *, event_id: str | None = None) -> WebhookRedelivered:
        """Queue one dead letter again, or all of them when `event_id` is not given."""
        path = f"/webhooks/{webhook_id}/dead-letters"
        path += f"/{event_id}/redeliver" if event_id else "/redeliver"
        return self._client._request(WebhookRedelivered, "POST", path)


class Notifications(_Resource):
    def list(
        self,
        *,
        type: str | None = None,
        priority: str | None = None,
        unread: bool | None = None,
        limit: int | None = None,
    ) -> NotificationList:
        """Newest first. `unread=True`: unread ones only; `unread=False`: read ones only."""
        params = {
            "type": type,
            "priority": priority,
            "unread": None if unread is None else str(unread).lower(),
            "limit": limit,
        }
        return self._client._request(NotificationList, "GET", "/notifications", params=params)

    def mark_read(self, notification_id: str) -> Notification:
        return self._client._request(Notification, "POST", f"/notifications/{notification_id}/read")

    def clear(self) -> Message:
        return self._client._request(Message, "DELETE", "/notifications")


__all__ = ["EventStream", "PIVOTClient"]
