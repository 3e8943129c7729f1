"""Metric series as columns, and deterministic shape-preserving downsampling.

Decoding a million JSON stream entries per history request would take seconds, so each worker
keeps a derived column cache per session and stream: the order field (epoch for the per-epoch
stream, global_step for the step stream), values, timestamps and epochs of every metric, in
packed arrays, caught up incrementally from the Redis stream (XRANGE after the last entry it
has seen) on every request; the steps stream's column entries are appended a column at a
time, without parsing a point. Redis stays the truth: the cache only ever holds what the stream
holds, is bounded (least recently used sessions are dropped), and a fresh or restarted worker
rebuilds it from the stream. Nothing any other worker needs lives in it. Downsampled reads
(`max_points`) come from min/max rollups in Redis instead (`pivot_api.metrics.rollups`), which give
exactly what `downsample` gives here, without the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from redis.asyncio import Redis

from pivot_api.redis_util import text
from pivot_schema import keys

_PAGE = 5000
_NO_TS = -(2**63)  # a record without a parseable timestamp


def ts_us(value: Any) -> int:
    if not isinstance(value, str):
        return _NO_TS
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return _NO_TS
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def ts_text(us: int) -> str | None:
    """The API's timestamp form (ISO-8601, Z; microseconds only when non-zero), which is
    also the trainer's: a timestamp read back is the string it wrote."""
    if us == _NO_TS:
        return None
    seconds, micros = divmod(us, 1_000_000)
    when = datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)
    return when.isoformat().replace("+00:00", "Z")


@dataclass
class Column:
    xs: array = field(default_factory=lambda: array("q"))  # the order field (epoch or step)
    values: array = field(default_factory=lambda: array("d"))  # NaN for a null value
    stamps: array = field(default_factory=lambda: array("q"))
    epochs: array = field(default_factory=lambda: array("q"))  # kept only when x is not epoch


@dataclass
class SessionColumns:
    x_field: str
    reserved: frozenset[str]
    cursor: str = "0-0"
    columns: dict[str, Column] = field(default_factory=dict)
    points: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def add(self, record: dict[str, Any]) -> None:
        x = record.get(self.x_field)
        if not isinstance(x, int) or isinstance(x, bool):
            return
        epoch = record.get("epoch")
        by_step = self.x_field != "epoch"
        if by_step and (not isinstance(epoch, int) or isinstance(epoch, bool)):
            epoch = 0
        stamp = ts_us(record.get("timestamp"))
        for name, value in record.items():
            if name in self.reserved:
                continue
            if value is None:
                number = math.nan
            elif isinstance(value, int | float) and not isinstance(value, bool):
                number = float(value)
            else:
                continue
            column = self.columns.get(name)
            if column is None:
                column = self.columns[name] = Column()
            column.xs.append(x)
            column.values.append(number)
            column.stamps.append(stamp)
            if by_step:
                column.epochs.append(epoch)
            self.points += 1

    def add_columns(self, columns: dict[str, array[Any]]) -> None:
        """A column entry (`keys.decode_step_columns`): whole columns appended at C speed,
        its `time_us` already the stamps, no per-point parsing."""
        xs = columns.get(self.x_field)
        if xs is None or xs.typecode != "q":
            return
        n = len(xs)
        epochs = columns.get("epoch") if self.x_field != "epoch" else None  # as in `add`
        if self.x_field != "epoch" and (epochs is None or epochs.typecode != "q"):
            epochs = array("q", bytes(8 * n))
        stamps = columns.get(keys.STEP_TIME_FIELD)
        if stamps is None or stamps.typecode != "q":
            stamps = array("q", [_NO_TS]) * n
        for name, values in columns.items():
            if name in self.reserved or name == keys.STEP_TIME_FIELD or len(values) != n:
                continue
            column = self.columns.get(name)
            if column is None:
                column = self.columns[name] = Column()
            column.xs.extend(xs)
            column.values.extend(values if values.typecode == "d" else array("d", values))
            column.stamps.extend(stamps)
            if epochs is not None:
                column.epochs.extend(epochs)
            self.points += n

    def add_entry(self, fields: Any) -> None:
        """One stream entry as a trainer writes it: a column entry or JSON record(s).
        Raises ValueError (or UnicodeDecodeError) for an entry no trainer writes."""
        columns = keys.decode_step_columns(fields or {})
        if columns is not None:
            self.add_columns(columns)
        else:
            for record in keys.decode_records(fields or {}):
                self.add(record)


@dataclass
class Series:
    xs: np.ndarray
    values: np.ndarray
    stamps: np.ndarray
    epochs: np.ndarray  # the epoch of each point (equal to xs for the per-epoch stream)


class SeriesCache:
    """Columns of one kind of stream (`stream_key(session_id)`), ordered by `x_field`;
    `reserved` are the record fields that are not metrics."""

    def __init__(
        self,
        redis: Redis,
        *,
        max_points: int,
        stream_key: Callable[[str], str] = keys.metrics_stream,
        x_field: str = "epoch",
        reserved: frozenset[str] = keys.RESERVED_FIELDS,
    ) -> None:
        self._redis = redis
        self._max_points = max_points
        self._stream_key = stream_key
        self._x_field = x_field
        self._reserved = reserved
        self._sessions: OrderedDict[str, SessionColumns] = OrderedDict()

    async def _catch_up(self, session_id: str) -> SessionColumns:
        cols = self._sessions.get(session_id)
        if cols is None:
            cols = self._sessions[session_id] = SessionColumns(self._x_field, self._reserved)
        self._sessions.move_to_end(session_id)
        async with cols.lock:
            key = self._stream_key(session_id)
            while True:
                entries = await self._redis.xrange(key, min="(" + cols.cursor, max="+", count=_PAGE)
                for raw_id, fields in entries or []:
                    # An entry that is not a record a trainer writes is skipped, never a 500.
                    # Steps-stream entries pack several records.
                    with contextlib.suppress(ValueError, UnicodeDecodeError):
                        cols.add_entry(fields)
                    cols.cursor = text(raw_id)
                if len(entries or []) < _PAGE:
                    break
                await asyncio.sleep(0)  # a long catch-up must not starve other requests
        self._evict()
        return cols

    @property
    def points(self) -> int:
        return sum(c.points for c in self._sessions.values())

    def _evict(self) -> None:
        total = sum(c.points for c in self._sessions.values())
        while total > self._max_points and len(self._sessions) > 1:
            _, dropped = self._sessions.popitem(last=False)
            total -= dropped.points

    async def series(
        self,
        session_id: str,
        metric: str,
        start: int | None,
        end: int | None,
        max_points: int | None = None,
    ) -> tuple[Series, int]:
        """One metric ordered by the x field, the last report of a repeated x winning (a
        trainer that resumed from a checkpoint reports some epochs again), within
        [start, end], reduced to `max_points`; and the number of points in the range before
        that."""
        cols = await self._catch_up(session_id)
        column = cols.columns.get(metric)
        if column is None:
            empty = np.empty(0, dtype=np.int64)
            return Series(empty, np.empty(0), empty, empty), 0
        # No await from here on: the views below pin the arrays, which must not grow
        # (a catch-up appending to an exported array would fail) until they are dropped.
        xs = np.frombuffer(column.xs, dtype=np.int64)
        values = np.frombuffer(column.values, dtype=np.float64)
        stamps = np.frombuffer(column.stamps, dtype=np.int64)
        epochs = np.frombuffer(column.epochs, dtype=np.int64) if len(column.epochs) else xs
        if xs.size > 1 and not bool(np.all(xs[1:] > xs[:-1])):
            # Keep the last occurrence of each x, in x order.
            rev = xs[::-1]
            uniq, first_in_rev = np.unique(rev, return_index=True)
            idx = xs.size - 1 - first_in_rev
            xs, values, stamps, epochs = uniq, values[idx], stamps[idx], epochs[idx]
        lo = 0 if start is None else int(np.searchsorted(xs, start, "left"))
        hi = xs.size if end is None else int(np.searchsorted(xs, end, "right"))
        total = max(0, hi - lo)
        if max_points is not None and total > max_points:
            picked = lo + downsample(values[lo:hi], max_points, lo)
            # Fancy indexing copies only the picked points.
            return Series(xs[picked], values[picked], stamps[picked], epochs[picked]), total
        part = slice(lo, hi)
        return (
            Series(xs[part].copy(), values[part].copy(), stamps[part].copy(), epochs[part].copy()),
            total,
        )


def bucket_size(first: int, end: int, buckets: int) -> int:
    """The smallest power of two S such that the S-aligned blocks (aligned to position 0 of
    the whole series) that overlap positions [first, end) number at most `buckets`."""
    size = 1
    while (end - 1) // size - first // size + 1 > buckets:
        size *= 2
    return size


def lows(values: np.ndarray) -> np.ndarray:
    """Keys for a bucket's minimum: a null (NaN) never wins unless the bucket holds nothing else."""
    return np.where(np.isnan(values), np.inf, values)


def highs(values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), -np.inf, values)


def _first_arg(keys_: np.ndarray, starts: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Per segment (from each of `starts` to the next), the first index whose key is `best`."""
    lengths = np.diff(np.append(starts, keys_.size))
    hits = np.flatnonzero(keys_ == np.repeat(best, lengths))
    segment = np.searchsorted(starts, hits, "right") - 1
    _, first = np.unique(segment, return_index=True)
    return hits[first]


def downsample(values: np.ndarray, max_points: int, offset: int = 0) -> np.ndarray:
    """Indices of at most `max_points` points that keep the series' shape: the first and the
    last point, and the minimum and the maximum (the first of equals) of each bucket in
    between (min/max buckets, as in M4). `values` are positions `offset`.. of the whole
    series, and buckets are power-of-two blocks of positions aligned to position 0, so that
    min/max rollups kept per block (`pivot_api.metrics.rollups`) give exactly these points without
    reading the range. Deterministic: the same series gives the same points."""
    n = values.size
    if n <= max_points:
        return np.arange(n)
    if max_points < 4:
        return np.linspace(0, n - 1, max_points).round().astype(np.int64)
    first, end = offset + 1, offset + n - 1  # the inner points, as global positions
    size = bucket_size(first, end, (max_points - 2) // 2)
    starts = np.concatenate([[first], np.arange((first // size + 1) * size, end, size)])
    starts = (starts - offset).astype(np.int64)
    inner = slice(1, n - 1)
    lo_keys, hi_keys = lows(values)[inner], highs(values)[inner]
    local = starts - 1
    arg_min = _first_arg(lo_keys, local, np.minimum.reduceat(lo_keys, local))
    arg_max = _first_arg(hi_keys, local, np.maximum.reduceat(hi_keys, local))
    picked = np.unique(np.concatenate([arg_min, arg_max])) + 1
    return np.concatenate([[0], picked, [n - 1]]).astype(np.int64)
