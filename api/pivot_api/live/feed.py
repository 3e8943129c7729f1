"""The sessions list, live: every session once, then what changes (GET /sse/sessions).

A fresh stream sends a snapshot (each session as `GET /training/sessions/{id}` shows it,
newest first) and then `ready`; after that, `session` for a session as it is now and `deleted`
for one that is gone. Positions are Kubernetes resourceVersions, so a client can resume on any
worker or replica: the last event of each batch carries `id: <resourceVersion>`, and a
reconnect with Last-Event-ID gets the sessions that changed after it (their current state, not
every intermediate one, as a Kubernetes watch after a re-list would), then `ready`. When the
worker no longer knows what changed since then (its change log moved on, or the position is
older than its cache), it sends `reset` and a fresh snapshot.

Events inside a batch carry no id, so a connection lost mid-batch resumes from the batch
before: a session is then sent twice, never missed (`session` events replace, by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import Gauge

from pivot_api.errors import BadRequestError, ServiceUnavailableError
from pivot_api.kube import Obj, SessionCache
from pivot_api.sessions.service import SessionService, sort_newest_first, to_detail

SESSION = "session"
DELETED = "deleted"
READY = "ready"
RESET = "reset"

# Frames are written in chunks: a 10,000-session snapshot is not 10,000 socket writes.
_CHUNK_FRAMES = 200
_RETRY_MS = 1000

LIST_STREAM_CLIENTS = Gauge(
    "pivot_api_session_list_stream_clients", "Open live streams of the sessions list"
)


def _frame(kind: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return f"{head}event: {kind}\ndata: {body}\n\n"


def parse_position(value: str | None, *, field_name: str) -> int | None:
    """A Last-Event-ID (or `since`) of this stream: a resourceVersion, a whole number."""
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 20:
        raise BadRequestError(
            f"{field_name} must be an id this stream sent (a whole number)",
            {"field": field_name, "value": value[:64]},
        )
    return int(value)


class SessionFeed:
    """Live list streams of one worker, all reading its session cache."""

    def __init__(
        self,
        sessions: SessionService,
        cache: SessionCache,
        *,
        heartbeat_s: float,
        max_clients: int,
    ) -> None:
        self._sessions = sessions
        self._cache = cache
        self._heartbeat_s = heartbeat_s
        self._max_clients = max_clients
        self._closing = asyncio.Event()
        self.clients = 0

    def open(self) -> None:
        """Refuse a stream before it starts when this worker has as many as it may hold."""
        if self.clients >= self._max_clients:
            raise ServiceUnavailableError(
                "too many live-stream clients on this server; retry shortly",
                {"max_clients": self._max_clients},
            )

    def close(self) -> None:
        """End every stream (at shutdown): clients reconnect to another worker or later."""
        self._closing.set()

    def _details(self, objs: list[Obj]) -> list[str]:
        return [
            _frame(SESSION, to_detail(o).model_dump(mode="json")) for o in sort_newest_first(objs)
        ]

    async def events(self, since: int | None) -> AsyncIterator[str]:
        self.clients += 1
        LIST_STREAM_CLIENTS.inc()
        try:
            async for chunk in self._events(since):
                yield chunk
        finally:
            self.clients -= 1
            LIST_STREAM_CLIENTS.dec()

    async def _events(self, since: int | None) -> AsyncIterator[str]:
        yield f"retry: {_RETRY_MS}\n\n"
        cache = self._cache
        pending: dict[str, int] = {}  # session -> its newest change not sent yet
        horizon = cache.horizon
        resuming = since is not None and horizon is not None and since >= horizon
        if resuming:
            assert since is not None
            # Everything the log holds after `since` (all of it is after `horizon`), from a
            # cache never older than what another worker has shown.
            await self._sessions.catch_up()
            cursor, seq = since, cache.first_change
        else:
            if since is not None:
                yield _frame(RESET, {"reason": "changes since that id are not kept here"})
            async for chunk in self._snapshot_frames():
                if isinstance(chunk, str):
                    yield chunk
                else:
                    seq, cursor = chunk
        beat = time.monotonic() + self._heartbeat_s
        while not self._closing.is_set():
            changes = cache.changes_from(seq)
            if changes is None:  # fell behind the log: start over from a snapshot
                yield _frame(RESET, {"reason": "this stream fell too far behind"})
                pending.clear()
                async for chunk in self._snapshot_frames():
                    if isinstance(chunk, str):
                        yield chunk
                    else:
                        seq, cursor = chunk
                continue
            seq += len(changes)
            for rv, name in changes:
                if rv > cursor and rv > pending.get(name, 0):
                    pending[name] = rv
            # Read after the log, with no await between: every change up to it is logged.
            position = cache.position
            batch: list[tuple[str, Any]] = []
            for name in [n for n, rv in pending.items() if rv <= position]:
                del pending[name]
                obj = cache.get(name)
                if obj is None:
                    batch.append((DELETED, {"session_id": name}))
                else:
                    batch.append((SESSION, to_detail(obj).model_dump(mode="json")))
            cursor = max(cursor, position)
            if batch:
                frames = [_frame(kind, data) for kind, data in batch[:-1]]
                frames.append(_frame(*batch[-1], cursor))
                yield "".join(frames)
                beat = time.monotonic() + self._heartbeat_s
            if resuming:
                resuming = False
                yield _frame(READY, {"count": len(batch)}, cursor)
            if time.monotonic() >= beat:
                beat = time.monotonic() + self._heartbeat_s
                yield ": heartbeat\n\n"
            await self._wait(max(0.0, beat - time.monotonic()))

    async def _snapshot_frames(self) -> AsyncIterator[str | tuple[int, int]]:
        """Every session's frame and `ready`, then (log position, cache position) to go on
        from."""
        covered = await self._sessions.catch_up()
        # No await between reading the objects and the two positions: one instant.
        objs, seq, cursor = self._cache.all(), self._cache.next_change, self._cache.position
        frames = self._details(objs)
        await self._sessions.shown_all(covered)
        for i in range(0, len(frames), _CHUNK_FRAMES):
            yield "".join(frames[i : i + _CHUNK_FRAMES])
        yield _frame(READY, {"count": len(frames)}, cursor)
        yield seq, cursor

    async def _wait(self, within_s: float) -> None:
        """Until the cache moves, the feed closes, or `within_s` passes."""
        moved = asyncio.ensure_future(self._cache.wait_moved(within_s))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({moved, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (moved, closing):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
