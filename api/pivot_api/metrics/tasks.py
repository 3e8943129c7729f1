"""Rollups maintained at ingest: one worker (the leader) folds what trainers write into the
rollups every `rollup_interval_s`, so that no read pays for a long run nobody looked at while
it trained (a dashboard's first look, a fresh worker, a replica after a restart). Reads still
catch up whatever this has not folded in yet; that is at most one interval of points. Streams
written before rollups existed (or while no API ran) are rolled up in the background."""

from __future__ import annotations

import asyncio
import logging
import time

from pivot_api.kube import SessionCache
from pivot_api.metrics.service import MetricsService
from pivot_api.redis_util import reraise_cancellation
from pivot_api.sessions.service import status_of
from pivot_schema.crd import SessionStatus

log = logging.getLogger(__name__)

BACKLOG_PER_ROUND = 8


class RollupKeeper:
    def __init__(self, metrics: MetricsService, cache: SessionCache, *, interval_s: float) -> None:
        self._metrics = metrics
        self._cache = cache
        self._interval_s = interval_s
        # Running at the last round: a session that has just finished gets one more round,
        # for the points written between that round and its end.
        self._running: set[str] = set()
        # Sessions known to be rolled up to their end. The others (streams written before
        # rollups existed, or while no API ran) are rolled up in the background, instead of
        # by their first reader.
        self._done: set[str] = set()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                reraise_cancellation()
                # A Redis blip ends one round, not the keeping: reads catch up meanwhile.
                log.exception("rollup round failed")
            await asyncio.sleep(max(0.0, self._interval_s - (time.monotonic() - started)))

    async def round(self) -> list[str]:
        """Bring every running (or just finished) session's rollups up to date, then others
        not yet known to be; returns the sessions it looked at."""
        if not self._cache.synced:
            return []
        objects = self._cache.all()
        names = {o["metadata"]["name"] for o in objects}
        running = {o["metadata"]["name"] for o in objects if status_of(o) == SessionStatus.RUNNING}
        targets = sorted(running | self._running)
        for name in targets:
            await self._metrics.keep_rollups(name)
        self._running = running
        # Then a few of the backlog a round: background work must not crowd the worker's
        # requests (most have nothing to fold in: two small reads a stream).
        self._done &= names  # forget deleted sessions
        for name in sorted(names - running - self._done)[:BACKLOG_PER_ROUND]:
            await self._metrics.keep_rollups(name)
            self._done.add(name)
            targets.append(name)
        return targets
