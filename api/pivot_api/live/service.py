"""Live training streams (SSE and WebSocket), fed from the trainer's Redis Streams.

The event id a client sees is a cursor over the session's metrics and events streams,
`<metrics id>_<events id>`: resuming from it (SSE Last-Event-ID, WebSocket `since`) restarts
both reads exactly where that client left off, so a reconnecting client misses nothing and
sees nothing twice. Any worker can resume any client.

Fan-out: a worker holds one blocking XREAD per session (a `_Tail`), whatever the number of
its clients of that session; each read is parsed once and handed to every client. A client
joins by subscribing to the tail (from then on it receives everything after the tail's
position) and then reading, with its own non-blocking reads, what lies between its cursor and
that position. Each client drops entries at or before its own cursor, so the two overlap
safely and delivery stays exactly once. The tail lives while the session has clients here;
it is derived from Redis, which stays the only state a resume needs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pivot_api.errors import BadRequestError, NotFoundError, PivotError, ServiceUnavailableError
from pivot_api.observability import STREAM_CLIENTS
from pivot_api.redis_util import reraise_cancellation, text
from pivot_api.sessions.service import SessionService, status_of
from pivot_schema import keys
from pivot_schema.crd import SessionStatus

log = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
# An event id as sent in SSE `id:` (or one stream id, meaning that instant in both streams).
EVENT_ID_PATTERN = r"^\d{1,20}-\d{1,20}(_\d{1,20}-\d{1,20})?$"
_BATCH = 500
_MIN_BACKOFF_S = 0.1
# Entries a client may have queued from its tail; a client that falls this far behind (a
# slow socket) is unsubscribed and catches up with its own reads, then joins again.
MAX_QUEUED = 10_000
# Statuses after which nothing more will come: the stream ends with a status event.
FINAL_STATUSES = frozenset({SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.STOPPED})
# How far along a status is, for "the served session has reached what the trainer said".
_RANK = {
    SessionStatus.CREATED: 0,
    SessionStatus.PENDING: 1,
    SessionStatus.RUNNING: 2,
    SessionStatus.STOPPED: 3,
    SessionStatus.COMPLETED: 3,
    SessionStatus.FAILED: 3,
}
# A trainer's end followed by more: the state the session was in after it (a failed attempt
# is retried; a stopped session was started again).
_ATTEMPT_END = {
    keys.EVENT_FAILED: SessionStatus.PENDING,
    keys.EVENT_STOPPED: SessionStatus.STOPPED,
    keys.EVENT_COMPLETED: SessionStatus.RUNNING,
}
# How often a held status event looks again (the cache also wakes it when it changes).
_SETTLE_POLL_S = 0.25
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

StreamKey = tuple[int, int]


def _id_key(stream_id: str) -> StreamKey:
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
    # Encoded forms (SSE frame, WebSocket text), made once for all clients sharing the event.
    frames: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


# Where a live message's `loss` comes from, first found first: a record's own `loss`, else
# the epoch's validation loss, else (an epoch without validation) its training loss.
LOSS_SOURCES = ("loss", "val_loss", "train_loss")


def loss_of(record: dict[str, Any]) -> float | None:
    """The reference's `loss` (its examples print `val_loss` as "Loss"): the value of the
    first of LOSS_SOURCES the record has. Null when that value is (a non-finite number the
    trainer wrote as) null: a diverged validation loss is not papered over with the
    training loss."""
    for name in LOSS_SOURCES:
        if name in record:
            value = record[name]
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return None
    return None


def metrics_event_data(record: dict[str, Any]) -> dict[str, Any]:
    """A `metrics` event's data: the epoch record (`epoch`, `timestamp`, every metric) with
    `loss` (see loss_of) beside them, the same on SSE and, rearranged, on the WebSocket."""
    return {**record, "loss": loss_of(record)}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One stream entry, parsed once: which stream (0 metrics, 1 events), its id, and its
    live event (None for an event type this API does not know) built with the cursor of a
    reader that has seen everything before it (`after`)."""

    stream: int
    key: StreamKey
    stream_id: str
    after: tuple[StreamKey, StreamKey]
    event: LiveEvent | None


def _parse(reply: Any, metrics_key: str, cursor: Cursor, session_id: str) -> list[_Entry]:
    """An XREAD reply over both streams, in time order (a checkpoint after the epoch it
    saved), each entry with the event it becomes for a reader at `cursor`."""
    raw: list[tuple[StreamKey, int, str, dict[str, Any] | None]] = []
    for key, items in reply or []:
        stream = 0 if text(key) == metrics_key else 1
        for raw_id, fields in items:
            sid = text(raw_id)
            try:
                record: dict[str, Any] | None = keys.decode_record(fields or {})
            except (ValueError, UnicodeDecodeError):
                record = None  # not a record a trainer writes: skipped, the cursor moves on
            raw.append((_id_key(sid), stream, sid, record))
    # By millisecond, then metrics before events: ids of the two streams are not ordered
    # within one millisecond, and a trainer writes an epoch's record before the event that
    # ends its run.
    raw.sort(key=lambda e: (e[0][0], e[1], e[0][1]))
    pos = [_id_key(cursor.metrics), _id_key(cursor.events)]
    ids = [cursor.metrics, cursor.events]
    out = []
    for key_, stream, sid, record in raw:
        pos[stream], ids[stream] = key_, sid
        event_cursor = f"{ids[0]}_{ids[1]}"
        event: LiveEvent | None = None
        if record is None:
            pass
        elif stream == 0:
            event = LiveEvent(METRICS, metrics_event_data(record), event_cursor, sid)
        else:
            event = _from_event(record, session_id, event_cursor, sid)
        out.append(_Entry(stream, key_, sid, (pos[0], pos[1]), event))
    return out


class _Subscriber:
    """One client's queue of entries from its session's tail."""

    __slots__ = ("batches", "overflow", "queued", "wake")

    def __init__(self) -> None:
        self.batches: list[list[_Entry]] = []
        self.queued = 0
        self.wake = asyncio.Event()
        self.overflow = False

    def take(self) -> list[list[_Entry]]:
        batches, self.batches, self.queued = self.batches, [], 0
        return batches


class _Tail:
    """The one blocking XREAD of a session in this worker, shared by its clients here."""

    def __init__(self, service: LiveService, session_id: str) -> None:
        self.session_id = session_id
        self.refs = 0  # clients holding it, subscribed or still waiting for `ready`
        self.subscribers: set[_Subscriber] = set()
        # Everything after this position is pushed to every subscriber.
        self.cursor = Cursor()
        self.ready = asyncio.Event()
        self._service = service
        self._metrics_key = keys.metrics_stream(session_id)
        self._events_key = keys.events_stream(session_id)
        self.stopped = False  # set with the cancellation: a swallowed one still ends the loop
        self.task = asyncio.create_task(self._run(), name=f"live-tail-{session_id}")

    def stop(self) -> None:
        self.stopped = True
        self.task.cancel()

    def subscribe(self) -> tuple[_Subscriber, Cursor]:
        """A new subscriber and the position after which the tail will push to it."""
        sub = _Subscriber()
        self.subscribers.add(sub)
        return sub, self.cursor

    def _push(self, entries: list[_Entry]) -> None:
        for sub in tuple(self.subscribers):
            if sub.queued + len(entries) > MAX_QUEUED:
                # Too far behind: it catches up from its own cursor (Redis has it all).
                self.subscribers.discard(sub)
                sub.overflow = True
                sub.batches.clear()
                sub.queued = 0
            else:
                sub.batches.append(entries)
                sub.queued += len(entries)
            sub.wake.set()

    async def _end(self) -> Cursor:
        """The streams' current last ids: the tail starts there."""
        pipe = self._service.redis.pipeline(transaction=False)
        pipe.xrevrange(self._metrics_key, count=1)
        pipe.xrevrange(self._events_key, count=1)
        metrics, events = await pipe.execute()
        return Cursor(
            text(metrics[0][0]) if metrics else "0-0", text(events[0][0]) if events else "0-0"
        )

    async def _run(self) -> None:
        redis = self._service.redis
        backoff = _MIN_BACKOFF_S
        while not self.stopped:
            try:
                if not self.ready.is_set():
                    self.cursor = await self._end()
                    self.ready.set()
                streams = {
                    self._metrics_key: self.cursor.metrics,
                    self._events_key: self.cursor.events,
                }
                reply = await redis.xread(
                    streams,  # type: ignore[arg-type]
                    count=_BATCH,
                    block=self._service.heartbeat_ms,
                )
            except RedisError as exc:
                reraise_cancellation()
                # Clients keep their heartbeats meanwhile; the position is unchanged, so
                # nothing is lost or repeated.
                if backoff == _MIN_BACKOFF_S:
                    log.warning("live tail of %s: redis read failed: %s", self.session_id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._service.heartbeat_ms / 1000)
                continue
            except Exception:
                reraise_cancellation()
                # A tail that died would leave its clients on heartbeats forever.
                log.exception("live tail of %s failed; retrying", self.session_id)
                await asyncio.sleep(self._service.heartbeat_ms / 1000)
                continue
            backoff = _MIN_BACKOFF_S
            if not reply:
                continue
            entries = _parse(reply, self._metrics_key, self.cursor, self.session_id)
            metrics_id, events_id = self.cursor.metrics, self.cursor.events
            for entry in entries:
                if entry.stream == 0:
                    metrics_id = entry.stream_id
                else:
                    events_id = entry.stream_id
            # No await between moving the position and pushing: a subscriber gets exactly
            # what follows the position it subscribed at.
            self.cursor = Cursor(metrics_id, events_id)
            self._push(entries)


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
        self.redis = redis
        self._sessions = sessions
        self._heartbeat_s = heartbeat_s
        self.heartbeat_ms = max(1, int(heartbeat_s * 1000))
        self._max_clients = max_clients
        self._tails: dict[str, _Tail] = {}
        self._released: set[_Tail] = set()  # let go of by their clients, not ended yet
        self.clients = 0

    @property
    def tails(self) -> int:
        """Sessions with a shared blocking read in this worker."""
        return len(self._tails)

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

    async def aclose(self) -> None:
        """Stop every shared read (at shutdown)."""
        tails, self._tails = [*self._tails.values(), *self._released], {}
        self._released.clear()
        for tail in tails:
            tail.stop()
        await asyncio.gather(*(t.task for t in tails), return_exceptions=True)

    def _acquire(self, session_id: str) -> _Tail:
        tail = self._tails.get(session_id)
        if tail is None or tail.task.done():
            tail = self._tails[session_id] = _Tail(self, session_id)
        tail.refs += 1
        return tail

    def _release(self, tail: _Tail, sub: _Subscriber | None) -> None:
        if sub is not None:
            tail.subscribers.discard(sub)
        tail.refs -= 1
        if tail.refs <= 0:
            tail.stop()  # its blocking read goes with it
            if self._tails.get(tail.session_id) is tail:
                del self._tails[tail.session_id]
            if not tail.task.done():  # until it has ended: shutdown waits for it
                self._released.add(tail)
                tail.task.add_done_callback(functools.partial(self._ended, tail))

    def _ended(self, tail: _Tail, _task: asyncio.Task[None]) -> None:
        self._released.discard(tail)

    async def _served(self, session_id: str) -> SessionStatus | None:
        """The session's status as the API serves it (GET, list): the one truth a stream's
        status events follow. None when it cannot be read now."""
        try:
            return status_of(await self._sessions.current(session_id))
        except NotFoundError:
            return SessionStatus.STOPPED  # deleted under the client: nothing more will come
        except PivotError:
            return None

    async def _final_status(self, session_id: str) -> SessionStatus | None:
        status = await self._served(session_id)
        return status if status in FINAL_STATUSES else None

    async def _more_after(self, session_id: str, cursor: Cursor, *, events_only: bool) -> bool:
        """Something follows `cursor` in the session's streams (the trainer went on); with
        `events_only`, a lifecycle event (a new attempt starts with one): an epoch record
        sent late is no sign of another run."""
        streams = {keys.events_stream(session_id): cursor.events}
        if not events_only:
            streams[keys.metrics_stream(session_id)] = cursor.metrics
        try:
            return bool(await self.redis.xread(streams, count=1))  # type: ignore[arg-type]
        except RedisError:
            return False

    async def _settle(
        self, session_id: str, event: LiveEvent, cursor: Cursor, more: bool
    ) -> AsyncIterator[LiveEvent]:
        """A trainer's status event, sent only once the session the API serves has reached
        it, so that no client reads an earlier state after it: `started` waits for the
        session to be running (or past it); `completed`/`failed`/`stopped` end the stream
        only once the session is finished, with the status it is served with. Heartbeats
        meanwhile.

        A trainer's end is not always the session's (a failed attempt is retried, a stopped
        session is started again): when anything follows it in the streams (`more`, or a
        later read), it goes out as a status event that does not end the stream, with the
        status the session has (had) after it. A `started` that anything follows is history
        and goes out as it is."""
        need = _RANK[SessionStatus.COMPLETED if event.final else SessionStatus.RUNNING]
        beat = time.monotonic() + self._heartbeat_s
        while True:
            if event.final and more:
                # An attempt's end, not the session's: the state the session was in after it
                # (the same live and when replayed).
                after = _ATTEMPT_END.get(str(event.data.get("event")))
                status = after.value if after is not None else event.data.get("status")
                yield LiveEvent(STATUS, {**event.data, "status": status}, event.id, event.stream_id)
                return
            served = await self._served(session_id)
            if served is not None and _RANK[served] >= need:
                if event.final:
                    data = {**event.data, "status": served.value}
                    yield LiveEvent(STATUS, data, event.id, event.stream_id, final=True)
                else:
                    yield event
                return
            if not event.final and more:
                # History (a started attempt that has since gone on or ended): as it was.
                yield event
                return
            await self._sessions.wait_changed(min(_SETTLE_POLL_S, self._heartbeat_s))
            more = await self._more_after(session_id, cursor, events_only=event.final)
            if time.monotonic() >= beat:
                beat = time.monotonic() + self._heartbeat_s
                yield LiveEvent(HEARTBEAT)

    async def events(
        self, session_id: str, cursor: Cursor, *, kind: str = "sse"
    ) -> AsyncIterator[LiveEvent]:
        """Events after `cursor`, then a final status event when the session ends.

        Between events it yields a heartbeat every `heartbeat_s`. The session's status is
        checked once the client has caught up and after every heartbeat, so a session that
        ended without a trainer event (a crash, a deleted CR) still closes its streams.
        """
        metrics_key, events_key = keys.metrics_stream(session_id), keys.events_stream(session_id)
        self.clients += 1
        gauge = STREAM_CLIENTS.labels(kind)
        gauge.inc()
        tail = self._acquire(session_id)
        sub: _Subscriber | None = None
        # This client's position, as stream ids and as comparable keys.
        pos = [_id_key(cursor.metrics), _id_key(cursor.events)]
        # The last event delivered was a final status. The stream ends only if nothing
        # follows it: a stopped session that was started again goes on.
        ended = False
        backoff = _MIN_BACKOFF_S

        def deliver(entries: list[_Entry]) -> list[tuple[LiveEvent, Cursor]]:
            nonlocal cursor
            out = []
            for entry in entries:
                if entry.key <= pos[entry.stream]:
                    continue  # already delivered (the catch-up and the tail overlap)
                pos[entry.stream] = entry.key
                if entry.stream == 0:
                    cursor = Cursor(entry.stream_id, cursor.events)
                else:
                    cursor = Cursor(cursor.metrics, entry.stream_id)
                event = entry.event
                if event is None:
                    continue  # an unknown event type: skipped, but the cursor moves on
                if entry.after != (pos[0], pos[1]):
                    # Parsed for a reader at another position: this client's own id.
                    event = LiveEvent(
                        event.kind, event.data, str(cursor), event.stream_id, event.final
                    )
                out.append((event, cursor))
            return out

        def parsed(reply: Any) -> list[_Entry]:
            return _parse(reply, metrics_key, cursor, session_id)

        async def send(batch: list[tuple[LiveEvent, Cursor]]) -> AsyncIterator[LiveEvent]:
            """A delivered batch, its status events settled against the served session."""
            nonlocal ended
            for i, (event, after) in enumerate(batch):
                if event.kind != STATUS:
                    ended = False
                    yield event
                    continue
                later = batch[i + 1 :]
                more = any(e.kind == STATUS for e, _ in later) if event.final else bool(later)
                async for out in self._settle(session_id, event, after, more):
                    if out.kind != HEARTBEAT:
                        ended = out.final
                    yield out

        try:
            while True:
                # Join (again, after an overflow): subscribe, then read what lies between
                # this client's cursor and the tail's position with non-blocking reads.
                while not tail.ready.is_set():
                    try:
                        async with asyncio.timeout(self._heartbeat_s):
                            await tail.ready.wait()
                    except TimeoutError:
                        yield LiveEvent(HEARTBEAT)  # Redis is unreachable for now
                sub, start = tail.subscribe()
                target = (_id_key(start.metrics), _id_key(start.events))
                while True:
                    behind = {}
                    if pos[0] < target[0]:
                        behind[metrics_key] = cursor.metrics
                    if pos[1] < target[1]:
                        behind[events_key] = cursor.events
                    if not behind:
                        break
                    try:
                        reply = await self.redis.xread(behind, count=_BATCH)  # type: ignore[arg-type]
                    except RedisError as exc:
                        if backoff == _MIN_BACKOFF_S:
                            log.warning("live stream of %s: redis read failed: %s", session_id, exc)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self._heartbeat_s)
                        yield LiveEvent(HEARTBEAT)
                        continue
                    backoff = _MIN_BACKOFF_S
                    if not reply:
                        break  # the entries up to the tail's position are gone (trimmed)
                    async for event in send(
                        deliver(_parse(reply, metrics_key, cursor, session_id))
                    ):
                        yield event
                check_status = True
                # Follow the tail.
                while not sub.overflow:
                    sub.wake.clear()
                    batches = sub.take()
                    if batches:
                        for batch in batches:
                            async for event in send(deliver(batch)):
                                yield event
                        continue
                    if ended:
                        # Confirm nothing follows it in Redis (the tail may not have read it).
                        streams = {metrics_key: cursor.metrics, events_key: cursor.events}
                        try:
                            reply = await self.redis.xread(streams, count=_BATCH)  # type: ignore[arg-type]
                        except RedisError:
                            return  # it ended; a reconnect resumes from its cursor
                        if not reply:
                            return
                        async for event in send(
                            deliver(_parse(reply, metrics_key, cursor, session_id))
                        ):
                            yield event
                        continue
                    if check_status:
                        check_status = False
                        final = await self._final_status(session_id)
                        if final is not None:
                            data = {"session_id": session_id, "status": final.value}
                            yield LiveEvent(STATUS, data, final=True)
                            return
                        continue  # the lookup awaited: look at the queue again
                    try:
                        async with asyncio.timeout(self._heartbeat_s):
                            await sub.wake.wait()
                    except TimeoutError:
                        yield LiveEvent(HEARTBEAT)
                        check_status = True
        finally:
            self._release(tail, sub)
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
