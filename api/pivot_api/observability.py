"""Prometheus metrics, request ids and structured (JSON) logs.

Metrics: with `PROMETHEUS_MULTIPROC_DIR` set (to an empty directory, before the workers start)
`/metrics` aggregates every uvicorn worker through prometheus_client's multiprocess mode;
without it each worker reports its own counters, and a scrape reaches one worker.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Scope key: the route label of a request answered outside the router (pivot_api.fastpath).
ROUTE_LABEL = "pivot.route_label"
# uuid4().hex's version (4) and variant (RFC 4122) bits, set on 128 random bits.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """What uuid.uuid4().hex returns, without building a UUID object (half the cost)."""
    return f"{int.from_bytes(os.urandom(16), 'big') & _UUID4_CLEAR | _UUID4_SET:032x}"


REQUESTS = Counter(
    "pivot_api_requests_total",
    "HTTP requests and WebSocket sessions, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "pivot_api_request_duration_seconds",
    "Time to the end of the response, by method and route template (streams: their lifetime).",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
)
STREAM_CLIENTS = Gauge(
    "pivot_api_stream_clients",
    "Connected live-stream clients (SSE and WebSocket).",
    ["kind"],
    multiprocess_mode="livesum",
)
CACHED_SESSIONS = Gauge(
    "pivot_api_session_cache_objects",
    "TrainingSessions in the watch cache (per worker; each holds every session).",
    multiprocess_mode="livemax",
)
CACHED_POINTS = Gauge(
    "pivot_api_history_cache_points",
    "Metric points decoded in the history column cache.",
    multiprocess_mode="livesum",
)


def metrics_payload() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def _route_of(scope: Scope) -> str:
    """The matched route's template with the prefix it was included under
    (/api/v1/training/sessions/{session_id}); raw paths would make labels unbounded."""
    label = scope.get(ROUTE_LABEL)
    if label is not None:  # known to the app that answered (pivot_api.fastpath)
        return str(label)
    route = scope.get("route")
    template = getattr(route, "path", None)
    regex = getattr(route, "path_regex", None)
    if not template or regex is None:
        return "unmatched"
    path = str(scope.get("path", ""))
    # An included router's route knows only its own part of the path: the literal prefix
    # in front of the part it matches is the inclusion prefix.
    for i, char in enumerate(path):
        if char == "/" and regex.match(path[i:]):
            return path[:i] + str(template)
    return str(template)


# The value each cache gauge was last set to (by this module, its only writer): a request
# that changes nothing skips the gauge's lock (the values change a few times a minute).
_gauge_values: dict[Gauge, float] = {}
# A forked worker starts its own multiprocess values (at 0): it must set them again.
os.register_at_fork(after_in_child=_gauge_values.clear)


def _set_gauge(gauge: Gauge, value: float) -> None:
    if _gauge_values.get(gauge) != value:
        gauge.set(value)
        _gauge_values[gauge] = value


def _update_cache_gauges(app: Any) -> None:
    state = getattr(app, "state", None)
    cache = getattr(state, "session_cache", None)
    if cache is not None:
        _set_gauge(CACHED_SESSIONS, cache.size)
    metrics = getattr(state, "metrics", None)
    if metrics is not None:
        _set_gauge(CACHED_POINTS, metrics.cached_points)


# Label children of the request metrics by (method, route, status): `.labels()` validates and
# takes a lock each call. Routes are templates and statuses few, but methods come from clients,
# hence the bound.
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_MAX_CHILDREN = 4096


def _request_metrics(method: str, route: str, status: int) -> tuple[Any, Any]:
    key = (method, route, status)
    found = _children.get(key)
    if found is None:
        if len(_children) >= _MAX_CHILDREN:
            _children.clear()
        found = _children[key] = (
            REQUESTS.labels(method, route, str(status)),
            LATENCY.labels(method, route),
        )
    return found


class ObservabilityMiddleware:
    """Request id in and out, one access log line, request metrics by route template.

    Pure ASGI (not BaseHTTPMiddleware), so streaming responses pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("pivot_api.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), ""
        )
        rid = incoming if _GOOD_ID.match(incoming) else new_request_id()
        token = request_id.set(rid)
        status = 101 if scope["type"] == "websocket" else 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "websocket.close":
                status = int(message.get("code", 1000))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method = scope.get("method", "WS")
            route = _route_of(scope)
            requests, latency = _request_metrics(method, route, status)
            requests.inc()
            _update_cache_gauges(scope.get("app"))
            latency.observe(elapsed)
            if self.log.isEnabledFor(logging.INFO):  # not even the record's dict otherwise
                self._log(scope, method, route, status, elapsed)
            request_id.reset(token)

    def _log(self, scope: Scope, method: str, route: str, status: int, elapsed: float) -> None:
        extra: dict[str, Any] = {}
        # Who it was: the API key's name (pivot_api.auth), never the key.
        key_name = (scope.get("state") or {}).get("api_key_name")
        if key_name:
            extra["api_key"] = key_name
        self.log.info(
            "%s %s %s",
            method,
            scope.get("path", ""),
            status,
            extra={
                "method": method,
                "path": scope.get("path", ""),
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                **extra,
            },
        )


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, and any `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


JsonFormatter.converter = time.gmtime  # type: ignore[assignment]


def configure_logging(level: str, fmt: str) -> None:
    """The API's loggers (`pivot_api.*`) to stderr, as JSON lines or plain text."""
    logger = logging.getLogger("pivot_api")
    logger.setLevel(level.upper())
    for handler in list(logger.handlers):
        if getattr(handler, "_pivot", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._pivot = True  # type: ignore[attr-defined]
    text = logging.Formatter("%(levelname)s %(name)s %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    logger.addHandler(handler)
    logger.propagate = False
