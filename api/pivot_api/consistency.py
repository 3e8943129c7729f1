"""Monotonic reads of sessions across API workers and replicas.

Each worker serves sessions from its own watch cache, and watches deliver the same change to
different workers moments apart. Without care, a client that read `completed` from one worker
could read `running` from the next. So the workers share one mark in Redis: the newest
resourceVersion any of them has shown a client. Before a read is answered, the worker raises
the mark to what its cache holds and reads it back in one round trip; a worker whose watch
is behind the mark waits for it to catch up (past a short bound it lists afresh).

Reads that arrive together share one round trip (a read barrier): a round sent after a read
arrived covers every answer given before it arrived, which is all monotonic reads need. So a
busy worker pays one Redis call per batch of reads, not one per read.

The mark is a resourceVersion, which Kubernetes (etcd) and the emulator hand out in one
increasing sequence; `pivot_api.kube` already orders cached objects by them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pivot_api.kube import Obj, SessionCache, rv_of
from pivot_schema.keys import ApiKeys

log = logging.getLogger(__name__)

# Raise the mark to ARGV[1] unless it is higher; return it.
_RAISE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local value = tonumber(ARGV[1])
if value > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return tostring(cur)
"""


class ReadMarks:
    """The mark of what this API has shown, shared by its workers through Redis."""

    def __init__(
        self, redis: Redis, keys: ApiKeys, cache: SessionCache, *, catch_up_s: float = 2.0
    ) -> None:
        self._key = keys.read_mark
        self._cache = cache
        self._catch_up_s = catch_up_s
        self._script = redis.register_script(_RAISE)
        # The round that reads arriving now join: not yet sent to Redis. Its result: the
        # value it raised the mark to, and the mark (None: Redis is out of reach).
        self._next: asyncio.Future[tuple[int, int | None]] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        self._warned_at = 0.0

    async def _raise(self, value: int) -> int | None:
        """Raise the mark to `value`; the mark (None: Redis is out of reach, and reads go on
        from the cache alone, monotonic per worker as before marks existed)."""
        try:
            return int(await self._script(keys=[self._key], args=[value]))
        except (RedisError, OSError, ValueError) as exc:
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("read mark unavailable (reads may lag other workers): %s", exc)
            return None

    def _send(self, done: asyncio.Future[tuple[int, int | None]]) -> None:
        """Start a round on the next turn of the loop, so that reads arriving in this one join
        it; the task is held until done (the loop keeps only weak references)."""
        task = asyncio.ensure_future(self._round(done))
        self._rounds.add(task)
        task.add_done_callback(self._rounds.discard)

    async def _round(self, done: asyncio.Future[tuple[int, int | None]]) -> None:
        self._next = None  # reads arriving from now on need a round sent after them
        raised = self._cache.seen
        try:
            mark = await self._raise(raised)
        except BaseException as exc:  # cancelled at shutdown: release the waiters
            if not done.done():
                done.set_exception(exc)
            raise
        if not done.done():
            done.set_result((raised, mark))

    async def read(self) -> int | None:
        """Wait until the cache holds everything any worker had shown before this call.

        Returns the version up to which the mark covers what this worker shows; a caller
        about to show something newer (the watch moved meanwhile) calls `cover` with it.
        None when Redis is out of reach."""
        done = self._next
        if done is None:
            done = self._next = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._send, done)
        raised, mark = await asyncio.shield(done)
        if mark is None:
            return None
        if self._cache.position < mark:
            await self._catch_up(mark)
        return max(raised, mark)

    async def cover(self, covered: int | None, showing: int | None) -> None:
        """Raise the mark to `showing` if the round of `read` did not reach it."""
        if covered is not None and showing is not None and showing > covered:
            await self._raise(showing)

    async def _catch_up(self, mark: int) -> None:
        deadline = time.monotonic() + self._catch_up_s
        while self._cache.position < mark and time.monotonic() < deadline:
            await self._cache.wait_moved(max(0.0, deadline - time.monotonic()))
        if self._cache.position < mark:
            # The watch is slow or stuck: one fresh list for all who wait.
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.ensure_future(self._cache.refresh())
            try:
                await asyncio.shield(self._refresh)
            except Exception as exc:  # the API server is out of reach too: the cache it is
                log.warning("could not catch up with the API server: %s", exc)

    async def shown(self, obj: Obj) -> None:
        """Record a version this worker is about to answer a write with (or to announce)."""
        rv = rv_of(obj)
        if rv is not None:
            await self._raise(rv)
