"""Metric records: the trainer's per-epoch Redis Stream, read back for the API."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pivot_api.errors import ServiceUnavailableError, ValidationError
from pivot_api.metrics.rollups import Rollups
from pivot_api.metrics.schemas import MetricHistory, MetricRecord, SessionMetrics, StepHistory
from pivot_api.metrics.series import Series, SeriesCache, ts_text
from pivot_api.redis_util import text
from pivot_api.sessions.service import SessionService
from pivot_schema import keys

# Entries read per round trip when scanning a stream.
_PAGE = 1000
# Fields of a step record that are not metrics.
_STEP_FIELDS = frozenset({"epoch", "step", "global_step", "timestamp"})


def _exclusive(stream_id: bytes | str | None) -> str:
    return "(" + text(stream_id)


class MetricsService:
    def __init__(
        self, redis: Redis, sessions: SessionService, *, cache_points: int = 5_000_000
    ) -> None:
        self._redis = redis
        self._sessions = sessions
        self._series = SeriesCache(redis, max_points=cache_points)
        # Step series are ordered by global_step (unique across a run, unlike `step`).
        self._steps = SeriesCache(
            redis,
            max_points=cache_points,
            stream_key=keys.steps_stream,
            x_field="global_step",
            reserved=_STEP_FIELDS,
        )
        # Downsampled reads come from rollups in Redis: as fast in a fresh worker as in a
        # warm one, and the same answer as the column cache gives.
        self._series_rollups = Rollups(
            redis,
            stream="metrics",
            stream_key=keys.metrics_stream,
            x_field="epoch",
            reserved=keys.RESERVED_FIELDS,
        )
        self._steps_rollups = Rollups(
            redis,
            stream="steps",
            stream_key=keys.steps_stream,
            x_field="global_step",
            reserved=_STEP_FIELDS,
        )

    async def keep_rollups(self, session_id: str) -> None:
        """Fold what was written since the last call into the rollups of both streams."""
        await self._series_rollups.current(session_id)
        await self._steps_rollups.current(session_id)

    @property
    def cached_points(self) -> int:
        return self._series.points + self._steps.points

    async def _newest_first(self, key: str) -> AsyncIterator[dict[str, Any]]:
        upper = "+"
        while True:
            entries = await self._redis.xrevrange(key, max=upper, min="-", count=_PAGE) or []
            for _, fields in entries:
                yield keys.decode_record(fields or {})
            if len(entries) < _PAGE:
                return
            upper = _exclusive(entries[-1][0])

    async def records(
        self, session_id: str, *, metric_name: str | None, limit: int
    ) -> SessionMetrics:
        """The session's latest `limit` records, oldest first; with `metric_name`, only the
        records that carry it, each reduced to epoch, timestamp and that metric."""
        await self._sessions.lookup(session_id)
        found: list[dict[str, Any]] = []
        try:
            async for record in self._newest_first(keys.metrics_stream(session_id)):
                if not isinstance(record.get("epoch"), int):
                    continue
                if metric_name is not None:
                    if metric_name not in record:
                        continue
                    record = {
                        "epoch": record["epoch"],
                        "timestamp": record.get("timestamp"),
                        metric_name: record[metric_name],
                    }
                found.append(record)
                if len(found) >= limit:
                    break
        except RedisError as exc:
            raise _redis_down(exc) from exc
        found.reverse()
        return SessionMetrics(
            session_id=session_id, metrics=[MetricRecord.model_validate(r) for r in found]
        )

    async def _read(
        self,
        cache: SeriesCache,
        rollups: Rollups,
        session_id: str,
        metric_name: str,
        start: tuple[str, int | None],
        end: tuple[str, int | None],
        max_points: int | None,
    ) -> tuple[Series, int]:
        """The range rule, the session check and the read shared by epoch and step series;
        `start` and `end` are (query parameter name, value)."""
        (lo_name, lo), (hi_name, hi) = start, end
        if lo is not None and hi is not None and lo > hi:
            raise ValidationError(
                f"{lo_name} must not be greater than {hi_name}",
                {"field": lo_name, lo_name: lo, hi_name: hi},
            )
        await self._sessions.lookup(session_id)
        try:
            if max_points is not None:
                read = await rollups.series(session_id, metric_name, lo, hi, max_points)
                if read is not None:
                    return read
            return await cache.series(session_id, metric_name, lo, hi, max_points)
        except RedisError as exc:
            raise _redis_down(exc) from exc

    async def history(
        self,
        session_id: str,
        *,
        metric_name: str,
        start_epoch: int | None,
        end_epoch: int | None,
        max_points: int | None = None,
    ) -> MetricHistory:
        """One metric as parallel lists, ordered by epoch. A trainer that resumed from a
        checkpoint reports some epochs twice; the later record wins. With `max_points`, a
        longer series is reduced to at most that many points that keep its shape."""
        series, total = await self._read(
            self._series,
            self._series_rollups,
            session_id,
            metric_name,
            ("start_epoch", start_epoch),
            ("end_epoch", end_epoch),
            max_points,
        )
        return MetricHistory(
            metric_name=metric_name,
            values=_values(series.values),
            epochs=series.xs.tolist(),
            timestamps=[ts_text(t) for t in series.stamps.tolist()],
            total_points=total,
            downsampled=int(series.xs.size) < total,
        )

    async def step_history(
        self,
        session_id: str,
        *,
        metric_name: str,
        start_step: int | None,
        end_step: int | None,
        max_points: int | None = None,
    ) -> StepHistory:
        """A step-level metric by global step, with the same range rule and downsampling as
        `history`. The trainer appends a step record only if it is newer than the stream's
        last, so a resumed run never repeats a point; a repeat would still be won by the
        later record."""
        series, total = await self._read(
            self._steps,
            self._steps_rollups,
            session_id,
            metric_name,
            ("start_step", start_step),
            ("end_step", end_step),
            max_points,
        )
        return StepHistory(
            metric_name=metric_name,
            values=_values(series.values),
            steps=series.xs.tolist(),
            epochs=series.epochs.tolist(),
            timestamps=[ts_text(t) for t in series.stamps.tolist()],
            total_points=total,
            downsampled=int(series.xs.size) < total,
        )


def _values(values: Any) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def _redis_down(exc: RedisError) -> ServiceUnavailableError:
    return ServiceUnavailableError("the metrics store is unavailable", {"reason": str(exc)})
