"""The asynchronous twin of `PIVOTClient`: the same methods, awaited."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

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
from pivot_client._client import (
    check_outcome,
    download_target,
    fallback_metrics,
    reconnect_delay,
    verify_download,
)
from pivot_client._exceptions import APIConnectionError, WaitTimeoutError, error_from_response
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


class AsyncPIVOTClient:
    """`PIVOTClient` for asyncio code; see its docstring."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url_from(base_url)
        self.api_key = api_key_from(api_key)
        self.retry = RetryPolicy(max_retries=max_retries)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._headers = default_headers(self.api_key, headers)
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.checkpoints = AsyncCheckpoints(self)
        self.alerts = AsyncAlerts(self)
        self.webhooks = AsyncWebhooks(self)
        self.notifications = AsyncNotifications(self)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncPIVOTClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

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

    async def _send(
        self, factory: Callable[[], httpx.Request], *, stream: bool = False
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = factory()
            try:
                response = await self._http.send(request, stream=stream, follow_redirects=True)
            except httpx.TransportError as exc:
                if attempt < self.retry.max_retries and self.retry.retry_error(request.method, exc):
                    await self._sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise connection_error(exc) from exc
            if response.is_success:
                return response
            if attempt < self.retry.max_retries and self.retry.retry_status(
                request.method, response.status_code
            ):
                await response.aclose()
                await self._sleep(self.retry.delay(attempt, response))
                attempt += 1
                continue
            if stream:
                await response.aread()
                await response.aclose()
            raise error_from_response(response)

    async def _request(self, cast_to: type[M], method: str, path: str, **kwargs: Any) -> M:
        response = await self._send(lambda: self._build(method, path, **kwargs))
        return cast_to.model_validate(response.json())

    # -- sessions ---------------------------------------------------------------------------

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
        """A new session (status `created`), as `PIVOTClient.create_session`."""
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
        return await self._request(CreatedSession, "POST", "/training/sessions", json_body=body)

    async def start_training(self, session_id: str) -> StartedSession:
        return await self._request(StartedSession, "POST", f"/training/sessions/{session_id}/start")

    async def stop_training(self, session_id: str) -> StoppedSession:
        return await self._request(StoppedSession, "POST", f"/training/sessions/{session_id}/stop")

    async def get_session(self, session_id: str) -> Session:
        return await self._request(Session, "GET", f"/training/sessions/{session_id}")

    async def list_sessions(
        self, *, status: str | None = None, page_size: int = 50
    ) -> AsyncIterator[SessionSummary]:
        offset, seen = 0, set()
        while True:
            page = await self.list_sessions_page(status=status, limit=page_size, offset=offset)
            for item in page.sessions:
                if item.session_id not in seen:
                    seen.add(item.session_id)
                    yield item
            offset += len(page.sessions)
            if not page.sessions or offset >= page.total:
                return

    async def list_sessions_page(
        self, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> SessionPage:
        params = {"status": status, "limit": limit, "offset": offset}
        return await self._request(SessionPage, "GET", "/training/sessions", params=params)

    # -- metrics ----------------------------------------------------------------------------

    async def get_metrics(
        self, session_id: str, *, metric_name: str | None = None, limit: int | None = None
    ) -> SessionMetrics:
        params = {"metric_name": metric_name, "limit": limit}
        return await self._request(
            SessionMetrics, "GET", f"/training/sessions/{session_id}/metrics", params=params
        )

    async def metric_history(
        self,
        session_id: str,
        *,
        metric_name: str | None = None,
        start_epoch: int | None = None,
        end_epoch: int | None = None,
    ) -> MetricHistory:
        params = {"metric_name": metric_name, "start_epoch": start_epoch, "end_epoch": end_epoch}
        return await self._request(
            MetricHistory, "GET", f"/metrics/{session_id}/history", params=params
        )

    async def step_history(
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
        return await self._request(
            StepHistory, "GET", f"/metrics/{session_id}/steps", params=params
        )

    def stream_events(
        self, session_id: str, *, last_event_id: str | None = None, max_reconnects: int = 5
    ) -> AsyncEventStream[LiveEvent]:
        return AsyncEventStream(self, session_id, lambda e: e, last_event_id, max_reconnects)

    def stream_metrics(
        self, session_id: str, *, last_event_id: str | None = None, max_reconnects: int = 5
    ) -> AsyncEventStream[LiveMetrics]:
        return AsyncEventStream(
            self,
            session_id,
            lambda e: metric_record(e) if e.event == "metrics" else None,
            last_event_id,
            max_reconnects,
        )

    async def wait_for_completion(
        self,
        session_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the same signature as the sync twin
        poll_interval: float = 1.0,
    ) -> MetricRecord:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            session = await self.get_session(session_id)
            if session.finished:
                check_outcome(session)
                records = (await self.get_metrics(session_id, limit=1)).metrics
                return records[-1] if records else fallback_metrics(session)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"session {session_id} still {session.status} after {timeout}s"
                )
            await self._sleep(poll_interval)

    # -- monitoring -------------------------------------------------------------------------

    async def session_gpu(self, session_id: str, *, limit: int | None = None) -> SessionGpuHistory:
        """The session trainer's latest GPU telemetry samples, oldest first."""
        return await self._request(
            SessionGpuHistory,
            "GET",
            f"/monitor/sessions/{session_id}/gpu",
            params={"limit": limit},
        )

    async def resources(self) -> Resources:
        return await self._request(Resources, "GET", "/monitor/resources")

    async def health(self) -> Health:
        return await self._request(Health, "GET", "/health")


class AsyncEventStream(Generic[T]):
    """Async twin of `EventStream`: `async with client.stream_metrics(id) as s: async for`."""

    def __init__(
        self,
        client: AsyncPIVOTClient,
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

    def __aiter__(self) -> AsyncEventStream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._events.__anext__()

    async def __aenter__(self) -> AsyncEventStream[T]:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._events.aclose()
        if self._response is not None:
            await self._response.aclose()
            self._response = None

    async def _run(self) -> AsyncGenerator[T, None]:
        client, state = self._client, self.state
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT, connect=10.0)
        path = f"/sse/training/{self._session_id}"
        while True:
            error: Exception | None = None
            try:
                self._response = await client._send(
                    lambda: client._build("GET", path, headers=state.headers(), timeout=timeout),
                    stream=True,
                )
                decoder = SSEDecoder()
                async for line in self._response.aiter_lines():
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
                    await self._response.aclose()
                    self._response = None
            state.failures += 1
            if state.failures > self._max_reconnects:
                raise APIConnectionError(
                    f"live stream of {self._session_id} broke off {state.failures} times "
                    f"without progress: {error or 'closed before the session ended'}"
                ) from error
            await client._sleep(reconnect_delay(state, client.retry))


class _AsyncResource:
    def __init__(self, client: AsyncPIVOTClient) -> None:
        self._client = client


class AsyncCheckpoints(_AsyncResource):
    async def list(
        self, *, session_id: str | None = None, limit: int | None = None
    ) -> CheckpointList:
        params = {"session_id": session_id, "limit": limit}
        return await self._client._request(CheckpointList, "GET", "/checkpoints", params=params)

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        session_id: str,
        epoch: int,
        metrics: Mapping[str, float] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> UploadedCheckpoint:
        file_path = Path(path)
        total = (await asyncio.to_thread(file_path.stat)).st_size
        data = {"session_id": session_id, "epoch": str(epoch)}
        if metrics is not None:
            data["metrics"] = json.dumps(dict(metrics))
        client = self._client
        # httpx's multipart encoder reads the file in 64 KiB chunks: local-disk reads that
        # size do not stall the loop noticeably, and it keeps one upload path for both clients.
        with file_path.open("rb") as fh:  # noqa: ASYNC230

            def build() -> httpx.Request:
                fh.seek(0)
                reader = ProgressReader(fh, total, on_progress)
                files = {"file": (file_path.name, reader, "application/octet-stream")}
                return client._build("POST", "/checkpoints", data=data, files=files)

            response = await client._send(build)
        return UploadedCheckpoint.model_validate(response.json())

    async def download(
        self,
        checkpoint_id: str,
        path: str | os.PathLike[str],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        client = self._client
        response = await client._send(
            lambda: client._build("GET", f"/checkpoints/{checkpoint_id}/download"), stream=True
        )
        try:
            target = download_target(Path(path), checkpoint_id, response)
            partial = target.with_name(target.name + ".part")
            total = int(response.headers.get("content-length") or 0)
            digest, done = hashlib.sha256(), 0
            try:
                with partial.open("wb") as out:
                    async for chunk in response.aiter_bytes(1 << 20):
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
            await response.aclose()
        return target

    async def delete(self, checkpoint_id: str) -> Message:
        return await self._client._request(Message, "DELETE", f"/checkpoints/{checkpoint_id}")


class AsyncAlerts(_AsyncResource):
    async def list(
        self,
        *,
        status: str | None = None,
        severity: str | None = None,
        session_id: str | None = None,
        limit: int | None = None,
    ) -> AlertList:
        """Alerts, newest first; `status` is active, acknowledged or resolved."""
        params = {"status": status, "severity": severity, "session_id": session_id, "limit": limit}
        return await self._client._request(AlertList, "GET", "/alerts", params=params)

    async def get(self, alert_id: str) -> Alert:
        return await self._client._request(Alert, "GET", f"/alerts/{alert_id}")

    async def acknowledge(
        self, alert_id: str, *, acknowledged_by: str, notes: str | None = None
    ) -> Alert:
        body = drop_none({"acknowledged_by": acknowledged_by, "notes": notes})
        return await self._client._request(
            Alert, "POST", f"/alerts/{alert_id}/acknowledge", json_body=body
        )

    async def resolve(
        self, alert_id: str, *, resolved_by: str | None = None, notes: str | None = None
    ) -> Alert:
        body = drop_none({"resolved_by": resolved_by, "notes": notes})
        return await self._client._request(
            Alert, "POST", f"/alerts/{alert_id}/resolve", json_body=body
        )

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
        body = rule_body(locals())
        return await self._client._request(AlertRule, "POST", "/alerts/rules", json_body=body)

    async def list_rules(self) -> AlertRuleList:
        return await self._client._request(AlertRuleList, "GET", "/alerts/rules")

    async def get_rule(self, rule_id: str) -> AlertRule:
        return await self._client._request(AlertRule, "GET", f"/alerts/rules/{rule_id}")

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
        body = rule_body(locals())
        return await self._client._request(
            AlertRule, "PATCH", f"/alerts/rules/{rule_id}", json_body=body
        )

    async def delete_rule(self, rule_id: str) -> Message:
        return await self._client._request(Message, "DELETE", f"/alerts/rules/{rule_id}")


class AsyncWebhooks(_AsyncResource):
    async def create(self, *, url: str, events: list[str], secret: str | None = None) -> Webhook:
        body = drop_none({"url": url, "events": events, "secret": secret})
        return await self._client._request(Webhook, "POST", "/webhooks", json_body=body)

    async def test(self, webhook_id: str) -> WebhookTestResult:
        return await self._client._request(
            WebhookTestResult, "POST", f"/webhooks/{webhook_id}/test"
        )

    async def list(self) -> WebhookList:
        return await self._client._request(WebhookList, "GET", "/webhooks")

    async def get(self, webhook_id: str) -> Webhook:
        return await self._client._request(Webhook, "GET", f"/webhooks/{webhook_id}")

    async def update(self, webhook_id: str, *, status: str) -> Webhook:
        body = {"status": status}
        return await self._client._request(
            Webhook, "PATCH", f"/webhooks/{webhook_id}", json_body=body
        )

    async def delete(self, webhook_id: str) -> Message:
        return await self._client._request(Message, "DELETE", f"/webhooks/{webhook_id}")

    async def deliveries(self, webhook_id: str, *, limit: int | None = None) -> WebhookDeliveryList:
        return await self._client._request(
            WebhookDeliveryList,
            "GET",
            f"/webhooks/{webhook_id}/deliveries",
            params={"limit": limit},
        )

    async def dead_letters(
        self, webhook_id: str, *, limit: int | None = None
    ) -> WebhookDeadLetterList:
        return await self._client._request(
            WebhookDeadLetterList,
            "GET",
            f"/webhooks/{webhook_id}/dead-letters",
            params={"limit": limit},
        )

    async def redeliver(
        self, webhook_id: str, *, event_id: str | None = None
    ) -> WebhookRedelivered:
        """Queue one dead letter again, or all of them when `event_id` is not given."""
        path = f"/webhooks/{webhook_id}/dead-letters"
        path += f"/{event_id}/redeliver" if event_id else "/redeliver"
        return await self._client._request(WebhookRedelivered, "POST", path)


class AsyncNotifications(_AsyncResource):
    async def list(
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
        return await self._client._request(NotificationList, "GET", "/notifications", params=params)

    async def mark_read(self, notification_id: str) -> Notification:
        return await self._client._request(
            Notification, "POST", f"/notifications/{notification_id}/read"
        )

    async def clear(self) -> Message:
        return await self._client._request(Message, "DELETE", "/notifications")
