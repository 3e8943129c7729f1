"""Live training streams (SSE and WebSocket), fed from the trainer's Redis Streams.

Each client holds one blocking XREAD over the session's metrics and events streams. The event
id a client sees is a cursor over both streams, `<metrics id>_<events id>`: resuming from it
(SSE Last-Event-ID, WebSocket `since`) restarts both reads exactly where that client left
off, so a reconnecting client misses nothing and sees nothing twice. No state lives in the
worker: any worker can resume any client.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pivot_api.errors import BadRequestError, NotFoundError, PivotError, ServiceUnavailableError
from pivot_api.observability import STREAM_CLIENTS
from pivot_api.services.sessions import SessionService, status_of
from pivot_schema import keys
from pivot_schema.crd import SessionStatus

log = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
# An event id as sent in SSE `id:` (or one stream id, meaning that instant in both streams).
EVENT_ID_PATTERN = r"^\d{1,20}-\d{1,20}(_\d{1,20}-\d{1,20})?$"
_BATCH = 500
_MIN_BACKOFF_S = 0.1
# Statuses after which nothing more will come: the stream ends with a status event.
FINAL_STATUSES = frozenset({SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.STOPPED})
_FINAL_EVENTS = {
    keys.EVENT_COMPLETED: SessionStatus.COMPLETED,
    keys.EVENT_FAILED: SessionStatus.FAILED,
    keys.EVENT_STOPPED: SessionStatus.STOPPED,
}

# Live event names (SSE `event:`; WebSocket `type`).
METRICS = "metrics"
STATUS = "status"
CHECKPOINT = "checkpoint"
HEARTBEAT = "heartbeat"


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Cursor:
    """Positions in the metrics and events streams; entries after them are still to come."""

    metrics: str = "0-0"
    events: str = "0-0"

    def __str__(self) -> str:
        return f"{self.metrics}_{self.events}"

    @classmethod
    def parse(cls, text: str | None, *, field_name: str) -> Cursor:
        """`<metrics id>_<events id>` as sent in `id:`; a single stream id means "after this
        instant" in both streams; empty means from the start."""
        if text is None or not text.strip():
            return cls()
        parts = text.strip().split("_")
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2 or not all(_STREAM_ID.match(p) for p in parts):
            raise BadRequestError(
                f"{field_name} is not an event id of this stream",
                {"field": field_name, "value": text[:100]},
            )
        return cls(parts[0], parts[1])


@dataclass
class LiveEvent:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    # The cursor after this event; None for events that are not stream entries.
    id: str | None = None
    stream_id: str | None = None
    final: bool = False


def loss_of(record: dict[str, Any]) -> float | None:
    """The reference's `loss`: val_loss, or train_loss for an epoch without validation."""
    for name in ("val_loss", "train_loss", "loss"):
        value = record.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


class LiveService:
    def __init__(
        self,
        redis: Redis,
        sessions: SessionService,
        *,
        heartbeat_s: float,
        max_clients: int = 2000,
    ) -> None:
        # A client of its own: its socket timeout must outlast a blocking read.
        self._redis = redis
        self._sessions = sessions
        self._heartbeat_ms = max(1, int(heartbeat_s * 1000))
        self._max_clients = max_clients
        self.clients = 0

    async def open(self, session_id: str, since: str | None, *, field_name: str) -> Cursor:
        """Check the session and the resume point before a stream starts (404, 400)."""
        cursor = Cursor.parse(since, field_name=field_name)
        await self._sessions.lookup(session_id)
        if self.clients >= self._max_clients:
            raise ServiceUnavailableError(
                "too many live-stream clients on this server; retry shortly",
                {"max_clients": self._max_clients},
            )
        return cursor

    async def _final_status(self, session_id: str) -> SessionStatus | None:
        try:
            status = status_of(await self._sessions.lookup(session_id))
        except NotFoundError:
            return SessionStatus.STOPPED  # deleted under the client: nothing more will come
        except PivotError:
            return None
        return status if status in FINAL_STATUSES else None

    async def events(
        self, session_id: str, cursor: Cursor, *, kind: str = "sse"
    ) -> AsyncIterator[LiveEvent]:
        """Events after `cursor`, then a final status event when the session ends.

        Between events it yields a heartbeat every `heartbeat_s`. Whenever the streams are
        drained it checks the session's status, so a session that ended without a trainer
        event (a crash, a deleted CR) still closes its streams.
        """
        metrics_key, events_key = keys.metrics_stream(session_id), keys.events_stream(session_id)
        self.clients += 1
        gauge = STREAM_CLIENTS.labels(kind)
        gauge.inc()
        try:
            drained = True  # read once without blocking, then check the status
            # The last event delivered was a final status. The stream ends only if nothing
            # follows it: a stopped session that was started again goes on.
            ended = False
            backoff = _MIN_BACKOFF_S
            while True:
                streams = {metrics_key: cursor.metrics, events_key: cursor.events}
                try:
                    reply = await self._redis.xread(
                        streams,  # type: ignore[arg-type]
                        count=_BATCH,
                        block=None if drained else self._heartbeat_ms,
                    )
                except RedisError as exc:
                    # Redis is down or refusing: keep the client (heartbeats) and retry with
                    # backoff; the cursor is unchanged, so nothing is lost or repeated.
                    if backoff == _MIN_BACKOFF_S:
                        log.warning("live stream of %s: redis read failed: %s", session_id, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._heartbeat_ms / 1000)
                    yield LiveEvent(HEARTBEAT)
                    continue
                backoff = _MIN_BACKOFF_S
                if reply:
                    entries: list[tuple[tuple[int, int], str, str, dict[str, Any]]] = []
                    for key, items in reply:
                        name = key.decode() if isinstance(key, bytes) else str(key)
                        for raw_id, fields in items:
                            sid = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                            record = keys.decode_record(fields or {})
                            entries.append((_id_key(sid), name, sid, record))
                    # Both streams in time order: a checkpoint after the epoch it saved.
                    entries.sort(key=lambda e: e[0])
                    for _, name, sid, record in entries:
                        if name == metrics_key:
                            cursor = Cursor(sid, cursor.events)
                            ended = False
                            yield LiveEvent(METRICS, record, str(cursor), sid)
                            continue
                        cursor = Cursor(cursor.metrics, sid)
                        event = _from_event(record, session_id, str(cursor), sid)
                        if event is not None:
                            ended = event.final
                            yield event
                    drained = True
                    continue
                if ended:
                    return
                if drained:
                    final = await self._final_status(session_id)
                    if final is not None:
                        data = {"session_id": session_id, "status": final.value}
                        yield LiveEvent(STATUS, data, final=True)
                        return
                    drained = False
                    continue
                yield LiveEvent(HEARTBEAT)
                drained = True
        finally:
            self.clients -= 1
            gauge.dec()


def _from_event(
    record: dict[str, Any], session_id: str, cursor: str, stream_id: str
) -> LiveEvent | None:
    kind = record.get("type")
    # The trainer's event type travels as `event`: `type` is the live message's own kind.
    fields = {k: v for k, v in record.items() if k != "type"}
    base = {"session_id": session_id, "event": kind}
    if kind == keys.EVENT_CHECKPOINT:
        return LiveEvent(CHECKPOINT, {**fields, **base}, cursor, stream_id)
    if kind == keys.EVENT_STARTED:
        data = {**fields, **base, "status": SessionStatus.RUNNING.value}
        return LiveEvent(STATUS, data, cursor, stream_id)
    if kind in _FINAL_EVENTS:
        data = {**fields, **base, "status": _FINAL_EVENTS[kind].value}
        return LiveEvent(STATUS, data, cursor, stream_id, final=True)
    return None  # an event type this API does not know: skipped, but the cursor moves on
