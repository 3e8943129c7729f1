"""Helpers both clients use: configuration, retry policy, request bodies, upload progress,
the Server-Sent Events decoder and the resume state of a live stream."""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import httpx

from pivot_client._exceptions import APIConnectionError, APITimeoutError
from pivot_client._model import FINAL_STATUSES
from pivot_client.types import LiveEvent, LiveMetrics

DEFAULT_URL = "http://localhost:8000"
API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# A live stream sends a heartbeat every 15 s by default; a read that waits much longer than
# that means a dead connection, which the stream then resumes.
STREAM_READ_TIMEOUT = 60.0
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 503})

ProgressCallback = Callable[[int, int], None]
"""Called as (bytes done, bytes total) while a checkpoint uploads or downloads."""


def base_url_from(base_url: str | None) -> str:
    """`PIVOT_URL` or the given URL, with the API prefix added when it is not there, so both
    `http://host:8000` (the reference's form) and `http://host:8000/api/v1` work."""
    url = (base_url or os.environ.get("PIVOT_URL") or DEFAULT_URL).strip().rstrip("/")
    if not url.endswith(API_PREFIX):
        url += API_PREFIX
    return url


def api_key_from(api_key: str | None) -> str | None:
    return api_key if api_key is not None else (os.environ.get("PIVOT_API_KEY") or None)


def default_headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    from pivot_client import __version__

    headers = {"Accept": "application/json", "User-Agent": f"pivot-client/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(extra or {})
    return headers


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """`retry-after-ms`, then `Retry-After` as seconds or an HTTP date; None if absent."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(raw) if raw.strip() else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter. A server's Retry-After wins
    (up to `max_retry_after`; longer than that is not worth blocking a caller for)."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        if response is not None:
            after = retry_after_seconds(response.headers)
            if after is not None and after <= self.max_retry_after:
                return after
        backoff = min(self.max_delay, self.initial_delay * 2**attempt)
        return backoff * (1 - 0.25 * random.random())

    def retry_status(self, method: str, status: int) -> bool:
        # A POST is never repeated once the server may have acted on it.
        return status in RETRY_STATUSES and method.upper() in _IDEMPOTENT

    @staticmethod
    def retry_error(method: str, exc: httpx.TransportError) -> bool:
        # Failing to connect means nothing was sent: safe to repeat even a POST.
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return True
        return method.upper() in _IDEMPOTENT


def connection_error(exc: httpx.TransportError) -> APIConnectionError:
    """The SDK's error for a request that got no answer, naming what was tried (`GET
    http://host:8000/api/v1/...`): "connection refused" alone does not say which URL."""
    request = None
    with contextlib.suppress(RuntimeError):  # a transport error raised without a request
        request = exc.request
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(request=request)
    reason = str(exc) or type(exc).__name__
    tried = f" ({request.method} {request.url})" if request is not None else ""
    return APIConnectionError(f"connection error: {reason}{tried}", request=request)


def drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# The fields of a session (create) and of an alert rule (create, update, replace), as the
# methods take them as keyword arguments.
SESSION_FIELDS = (
    *("config_path", "config", "session_name", "tags"),
    *("resources", "node_selector", "tolerations", "replicas"),
)
RULE_FIELDS = (
    *("name", "metric", "condition", "threshold", "severity", "enabled"),
    *("session_id", "tag", "for_epochs", "mode", "window_s", "action"),
)


def body_of(arguments: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The `fields` among a method's arguments (its `locals()`), unset ones left out, as
    JSON values: a Mapping or tuple given becomes the dict or list json.dumps needs."""
    return {k: _json_value(arguments[k]) for k in fields if arguments.get(k) is not None}


def _json_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


class ProgressReader:
    """A file wrapper that reports how much has been read; httpx's multipart encoder reads
    the file in chunks, so the upload streams and progress is what has gone on the wire."""

    def __init__(self, file: IO[bytes], total: int, callback: ProgressCallback | None) -> None:
        self._file = file
        self._total = total
        self._done = 0
        self._callback = callback

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._done += len(chunk)
        if self._callback is not None and chunk:
            self._callback(self._done, self._total)
        return chunk


@dataclass
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """The WHATWG event-stream parser, line by line. An event is dispatched only at its
    blank line, so a frame cut off by a dropped connection is never delivered."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def decode(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._data and not self._event and self._id is None:
                return None
            sse = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
            sse.retry = self._retry
            self._event, self._data, self._id, self._retry = "", [], None, None
            return sse
        if line.startswith(":"):
            return None  # a comment: the server's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def _stream_key(stream_id: str | None) -> tuple[int, int] | None:
    if not stream_id:
        return None
    ms, _, seq = stream_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return None


@dataclass
class StreamState:
    """Where a live stream stands across reconnects: the last event id (sent back as
    Last-Event-ID) and the newest metrics entry yielded, so nothing is yielded twice even if
    a server were to replay."""

    last_event_id: str | None = None
    last_metrics: tuple[int, int] | None = None
    ended: bool = False
    reconnect_delay: float | None = None
    failures: int = 0

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def accept(self, sse: ServerSentEvent) -> LiveEvent | None:
        """The event to hand to the caller, or None for one already seen or not meant for it."""
        if sse.retry is not None:
            self.reconnect_delay = sse.retry / 1000
        if sse.id:
            self.last_event_id = sse.id
        if not sse.data:
            return None
        try:
            data = json.loads(sse.data)
        except ValueError:
            return None
        if not isinstance(data, dict):
            data = {"value": data}
        self.failures = 0
        if sse.event == "metrics":
            key = _stream_key(data.get("stream_id")) or _stream_key(
                (sse.id or "").partition("_")[0]
            )
            if key is not None:
                if self.last_metrics is not None and key <= self.last_metrics:
                    return None
                self.last_metrics = key
            self.ended = False
        elif sse.event == "status":
            # A final status ends the stream only if the server then closes it: a stopped
            # session that is started again goes on.
            self.ended = data.get("status") in FINAL_STATUSES
        return LiveEvent(event=sse.event, data=data, id=sse.id)


def metric_record(event: LiveEvent) -> LiveMetrics:
    return LiveMetrics.model_validate(event.data)
