"""Min/max rollups of metric series, kept in Redis beside the streams, so that a downsampled
read of any range costs a few small reads, not a decode of the stream, in any worker.

A series (one metric of the metrics or steps stream, ordered by its x field) is cut into
blocks of `BLOCK` points by position; level j holds one record per complete block of
BLOCK * 2**j points: the block's first x, its minimum and maximum point (value, x, timestamp,
epoch; the first of equal values, nulls losing) and, at level 0, the ids of the stream entries
holding its first and last point. The points after the last complete level-0 block are the
tail. Everything lives in one hash (`keys.series_rollups`): levels in fields of CHUNK
records, the tail, and meta (cursor: the last stream entry folded in; points per series).
`pivot_api.metrics.series.downsample` buckets by power-of-two blocks aligned to position 0, so a
bucket is one level record, and a partial
bucket at a range's edge is a few records plus fewer than BLOCK raw points read from the
stream by their entry ids: the answer is exactly `downsample` of the raw series.

Rollups are derived data: a reader brings them up to date from the stream (one worker at a
time, under a Redis lock), which also builds them for streams written before they existed.
A series whose x does not strictly increase (never written by the trainer's append script)
gets none; its reads take the column cache as before.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from redis.asyncio import Redis

from pivot_api.metrics.series import (
    Series,
    SessionColumns,
    bucket_size,
    downsample,
    highs,
    lows,
)
from pivot_api.redis_util import script, text
from pivot_schema import keys

BLOCK = 128  # level-0 points a record: ~1.6 bytes of rollups a point (about 4% of a step)
CHUNK = 1024  # records a hash field: a read or a catch-up moves a few of these, not a level
_PAGE = 5000
_LOCK_MS = 30_000
_SAVE_PAGES = 20  # pages of a catch-up between writes of its progress
# Delete the lock only if it is still ours (it may have expired and been taken since).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
LEVEL = np.dtype(
    [
        ("x0", "<i8"),
        ("min_v", "<f8"),
        ("min_x", "<i8"),
        ("min_t", "<i8"),
        ("min_e", "<i8"),
        ("max_v", "<f8"),
        ("max_x", "<i8"),
        ("max_t", "<i8"),
        ("max_e", "<i8"),
        ("id0_ms", "<i8"),
        ("id0_seq", "<i8"),
        ("id1_ms", "<i8"),
        ("id1_seq", "<i8"),
    ]
)
# A raw point: x, value, timestamp, epoch, and the id of its stream entry.
POINT = np.dtype(
    [("x", "<i8"), ("v", "<f8"), ("t", "<i8"), ("e", "<i8"), ("ms", "<i8"), ("seq", "<i8")]
)


def _id(raw: Any) -> tuple[int, int]:
    ms, _, seq = text(raw).partition("-")
    return int(ms), int(seq or 0)


def _bytes(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else b""


def _text(raw: Any) -> str:
    ms, seq = _id(raw)
    return f"{ms}-{seq}"


def level0(points: np.ndarray) -> np.ndarray:
    """Records of the complete BLOCK-point blocks of `points` (a POINT array)."""
    m = points.size // BLOCK
    out = np.zeros(m, LEVEL)
    if not m:
        return out
    blocks = points[: m * BLOCK].reshape(m, BLOCK)
    base = np.arange(m) * BLOCK
    flat = points[: m * BLOCK]
    arg_min = base + lows(blocks["v"]).argmin(axis=1)
    arg_max = base + highs(blocks["v"]).argmax(axis=1)
    out["x0"] = blocks["x"][:, 0]
    for side, at in (("min", arg_min), ("max", arg_max)):
        for f, g in (("v", "v"), ("x", "x"), ("t", "t"), ("e", "e")):
            out[f"{side}_{f}"] = flat[g][at]
    out["id0_ms"], out["id0_seq"] = blocks["ms"][:, 0], blocks["seq"][:, 0]
    out["id1_ms"], out["id1_seq"] = blocks["ms"][:, -1], blocks["seq"][:, -1]
    return out


def merge(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Records of the blocks made of each `left` block and the `right` block after it; the
    right one wins only when strictly lower (higher), as argmin keeps the first of equals."""
    out = left.copy()
    take_min = lows(right["min_v"]) < lows(left["min_v"])
    take_max = highs(right["max_v"]) > highs(left["max_v"])
    for side, take in (("min", take_min), ("max", take_max)):
        for f in ("v", "x", "t", "e"):
            out[f"{side}_{f}"] = np.where(take, right[f"{side}_{f}"], left[f"{side}_{f}"])
    out["id1_ms"], out["id1_seq"] = right["id1_ms"], right["id1_seq"]
    return out


Level = tuple[int, np.ndarray]  # (index of the first record held, records from there on)


def build_levels(levels: list[Level], new0: np.ndarray) -> list[Level]:
    """`levels` with level-0 records `new0` appended and every level above caught up. Each
    level is held from some index on: a writer needs only a level's last chunk (the record a
    new one pairs with is at most one back)."""
    empty = np.zeros(0, LEVEL)
    start, rec0 = levels[0] if levels else (0, empty)
    out = [(start, np.concatenate([rec0, new0]))]
    j = 0
    while out[j][0] + out[j][1].size >= 2:
        start, below = out[j]
        have_at, have = levels[j + 1] if j + 1 < len(levels) else (0, empty)
        pairs = (start + below.size) // 2
        fresh = below[2 * (have_at + have.size) - start : 2 * pairs - start]
        out.append((have_at, np.concatenate([have, merge(fresh[0::2], fresh[1::2])])))
        j += 1
    return out


def _sizes(n: int) -> list[int]:
    """Records per level of a series of n points (levels with at least one)."""
    blocks = n // BLOCK
    return [blocks >> j for j in range(blocks.bit_length())]


@dataclass
class Meta:
    cursor: str = "0-0"
    series: dict[str, dict[str, Any]] = field(default_factory=dict)  # name: {"n", "ok"}

    def dumps(self) -> str:
        return json.dumps({"cursor": self.cursor, "series": self.series})

    @classmethod
    def loads(cls, raw: bytes | str | None) -> Meta | None:
        if raw is None:
            return None
        data = json.loads(raw)
        return cls(str(data["cursor"]), dict(data["series"]))


def decode_entries(
    entries: Any, x_field: str, reserved: frozenset[str], only: str | None = None
) -> dict[str, np.ndarray]:
    """Per metric, the points of stream entries as POINT arrays (decoded as the column cache
    does, so both read the same numbers)."""
    cols = SessionColumns(x_field, reserved)
    ids: dict[str, list[tuple[int, int, int]]] = {}
    for raw_id, fields in entries:
        before = {name: len(c.xs) for name, c in cols.columns.items()}
        try:
            cols.add_entry(fields)
        except (ValueError, UnicodeDecodeError):
            continue  # as the column cache: an entry no trainer writes is skipped
        ms, seq = _id(raw_id)
        for name, c in cols.columns.items():
            added = len(c.xs) - before.get(name, 0)
            if added:
                ids.setdefault(name, []).append((ms, seq, added))
    out: dict[str, np.ndarray] = {}
    for name, c in cols.columns.items():
        if only is not None and name != only:
            continue
        pts = np.zeros(len(c.xs), POINT)
        pts["x"] = np.frombuffer(c.xs, np.int64)
        pts["v"] = np.frombuffer(c.values, np.float64)
        pts["t"] = np.frombuffer(c.stamps, np.int64)
        pts["e"] = np.frombuffer(c.epochs, np.int64) if len(c.epochs) else pts["x"]
        runs = ids[name]
        counts = [r[2] for r in runs]
        pts["ms"] = np.repeat([r[0] for r in runs], counts)
        pts["seq"] = np.repeat([r[1] for r in runs], counts)
        out[name] = pts
    return out


class Rollups:
    """The rollups of one kind of stream (`stream` names it in field names: "metrics" or
    "steps"), read and kept up to date through Redis only: nothing here outlives a request."""

    def __init__(
        self,
        redis: Redis,
        *,
        stream: str,
        stream_key: Callable[[str], str],
        x_field: str,
        reserved: frozenset[str],
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._stream_key = stream_key
        self._x_field = x_field
        self._reserved = reserved

    def _field(self, metric: str | None, part: str) -> str:
        return keys.rollup_field(self._stream, metric, part)

    async def _meta(self, session_id: str) -> Meta | None:
        return Meta.loads(
            await self._redis.hget(keys.series_rollups(session_id), self._field(None, "meta"))
        )

    async def current(self, session_id: str) -> Meta:
        """Meta of rollups that hold every entry of the stream now, built or caught up here
        if needed, by one worker at a time (the others wait for it)."""
        key = self._stream_key(session_id)
        lock = keys.series_rollups_lock(session_id)
        while True:
            top = await self._redis.xrevrange(key, count=1)
            tip = "0-0" if not top else _text(top[0][0])
            meta = await self._meta(session_id) or Meta()
            if _id(tip) < _id(meta.cursor):
                meta = Meta()  # the stream was deleted and written again: roll it up anew
            if meta.cursor == tip:
                return meta
            token = uuid.uuid4().hex
            if await self._redis.set(lock, token, nx=True, px=_LOCK_MS):
                try:
                    return await self._catch_up(session_id, meta, lock)
                finally:
                    await script(self._redis, _RELEASE)(keys=[lock], args=[token])
            await asyncio.sleep(0.02)

    async def _catch_up(self, session_id: str, meta: Meta, lock: str) -> Meta:
        hkey = keys.series_rollups(session_id)
        names = [n for n, s in meta.series.items() if s["ok"]]
        levels: dict[str, list[Level]] = {}
        tails: dict[str, np.ndarray] = {}
        for name in names:
            starts = [(size - 1) // CHUNK * CHUNK for size in _sizes(int(meta.series[name]["n"]))]
            raw = await self._redis.hmget(
                hkey,
                [self._field(name, "tail")]
                + [self._field(name, f"{j}.{at // CHUNK}") for j, at in enumerate(starts)],
            )
            tails[name] = np.frombuffer(_bytes(raw[0]), POINT).copy()
            levels[name] = [
                (at, np.frombuffer(_bytes(r), LEVEL).copy())
                for at, r in zip(starts, raw[1:], strict=True)
            ]
        changed: set[str] = set()
        key = self._stream_key(session_id)
        pages = 0
        while True:
            entries = await self._redis.xrange(key, min="(" + meta.cursor, max="+", count=_PAGE)
            if not entries:
                break
            for name, pts in decode_entries(entries, self._x_field, self._reserved).items():
                state = meta.series.setdefault(name, {"n": 0, "ok": True})
                if not state["ok"]:
                    continue
                tail = tails.get(name, np.zeros(0, POINT))
                joined = np.concatenate([tail, pts])
                xs = np.concatenate([[state.get("last", -(2**63))], pts["x"]])
                if not bool(np.all(xs[1:] > xs[:-1])):
                    # A repeated or older x: only the column cache's dedup reads it right.
                    state["ok"] = False
                    changed.add(name)
                    continue
                state["last"] = int(pts["x"][-1])
                complete = joined.size // BLOCK * BLOCK
                levels[name] = build_levels(levels.get(name, []), level0(joined[:complete]))
                tails[name] = joined[complete:].copy()
                state["n"] = int(state["n"]) + pts.size
                changed.add(name)
            meta.cursor = _text(entries[-1][0])
            await self._redis.pexpire(lock, _LOCK_MS)
            pages += 1
            if pages % _SAVE_PAGES == 0:
                # A long build (a big stream from before rollups) keeps its progress: a
                # request cancelled midway does not send the next reader back to the start.
                await self._save(hkey, meta, changed, levels, tails)
            if len(entries) < _PAGE:
                break
            await asyncio.sleep(0)
        await self._save(hkey, meta, changed, levels, tails)
        return meta

    async def _save(
        self,
        hkey: str,
        meta: Meta,
        changed: set[str],
        levels: dict[str, list[Level]],
        tails: dict[str, np.ndarray],
    ) -> None:
        """Write the changed chunks, tails and meta, then keep only each level's last chunk."""
        mapping: dict[str, bytes | str] = {self._field(None, "meta"): meta.dumps()}
        for name in changed:
            if not meta.series[name]["ok"]:
                continue
            mapping[self._field(name, "tail")] = tails[name].tobytes()
            for j, (at, records) in enumerate(levels[name]):
                for c in range(at // CHUNK, -(-(at + records.size) // CHUNK)):
                    part = records[max(0, c * CHUNK - at) : (c + 1) * CHUNK - at]
                    mapping[self._field(name, f"{j}.{c}")] = part.tobytes()
            trimmed = []
            for at, records in levels[name]:
                last = max(at, (at + records.size - 1) // CHUNK * CHUNK)
                trimmed.append((last, records[last - at :]))
            levels[name] = trimmed
        # One write: a reader sees the old rollups or the new, never a mix.
        await self._redis.hset(hkey, mapping=mapping)  # type: ignore[arg-type]
        changed.clear()

    async def series(
        self,
        session_id: str,
        metric: str,
        start: int | None,
        end: int | None,
        max_points: int,
    ) -> tuple[Series, int] | None:
        """`SeriesCache.series` with `max_points`, from rollups; None when the series has none
        (its x does not strictly increase)."""
        meta = await self.current(session_id)
        state = meta.series.get(metric)
        if state is None:
            empty = np.empty(0, dtype=np.int64)
            return Series(empty, np.empty(0), empty, empty), 0
        if not state["ok"]:
            return None
        reader = _Reader(self, session_id, metric, int(state["n"]))
        await reader.load()
        return await reader.read(start, end, max_points)


class _Reader:
    """One read of one series: the chunks of level records it needs (fetched on demand, each
    once), and raw blocks read from the stream."""

    def __init__(self, owner: Rollups, session_id: str, metric: str, n: int) -> None:
        self.o, self.sid, self.metric, self.n = owner, session_id, metric, n
        self.sizes = _sizes(n)
        self.tail = np.zeros(0, POINT)
        self._chunks: dict[tuple[int, int], np.ndarray] = {}
        self._raw: dict[int, np.ndarray] = {}

    async def load(self) -> None:
        # The tail, and the coarsest level holding at most a chunk: where searches start.
        self.top = next((j for j, size in enumerate(self.sizes) if size <= CHUNK), None)
        wanted = [] if self.top is None else [(self.top, 0)]
        raw = await self._hmget(wanted, tail=True)
        self.tail = np.frombuffer(_bytes(raw[0]), POINT)

    async def _hmget(self, wanted: list[tuple[int, int]], *, tail: bool = False) -> list[Any]:
        fields = [self.o._field(self.metric, "tail")] if tail else []
        fields += [self.o._field(self.metric, f"{j}.{c}") for j, c in wanted]
        raw = await self.o._redis.hmget(keys.series_rollups(self.sid), fields)
        for at, value in zip(wanted, raw[len(raw) - len(wanted) :], strict=True):
            self._chunks[at] = np.frombuffer(_bytes(value), LEVEL)
        return list(raw)

    async def records(self, j: int, a: int, b: int) -> np.ndarray:
        """Level j's records [a, b)."""
        if a >= b:
            return np.zeros(0, LEVEL)
        span = range(a // CHUNK, (b - 1) // CHUNK + 1)
        missing = [(j, c) for c in span if (j, c) not in self._chunks]
        if missing:
            await self._hmget(missing)
        joined = np.concatenate([self._chunks[(j, c)] for c in span])
        at = a // CHUNK * CHUNK
        return joined[a - at : b - at]

    async def block(self, k: int) -> np.ndarray:
        """The raw points of level-0 block k (the tail for k past the last)."""
        if k >= (self.sizes[0] if self.sizes else 0):
            return self.tail
        got = self._raw.get(k)
        if got is None:
            rec = (await self.records(0, k, k + 1))[0]
            entries = await self.o._redis.xrange(
                self.o._stream_key(self.sid),
                min=f"{rec['id0_ms']}-{rec['id0_seq']}",
                max=f"{rec['id1_ms']}-{rec['id1_seq']}",
            )
            pts = decode_entries(entries, self.o._x_field, self.o._reserved, self.metric)
            series = pts.get(self.metric, np.zeros(0, POINT))
            at = int(np.searchsorted(series["x"], rec["x0"], "left"))
            got = self._raw[k] = series[at : at + BLOCK]
        return got

    async def _prefetch(self, ks: range) -> None:
        """Blocks ks of the stream in one XRANGE: a read of a short series (below the first
        level that spans max_points) needs many raw blocks, and one round trip each made a
        30k-point read take 250 ms."""
        stored = self.sizes[0] if self.sizes else 0
        missing = [k for k in ks if k < stored and k not in self._raw]
        if len(missing) < 2:
            return
        first, last = missing[0], missing[-1]
        recs = await self.records(0, first, last + 1)
        entries = await self.o._redis.xrange(
            self.o._stream_key(self.sid),
            min=f"{recs[0]['id0_ms']}-{recs[0]['id0_seq']}",
            max=f"{recs[-1]['id1_ms']}-{recs[-1]['id1_seq']}",
        )
        pts = decode_entries(entries, self.o._x_field, self.o._reserved, self.metric)
        series = pts.get(self.metric, np.zeros(0, POINT))
        starts = np.searchsorted(series["x"], recs["x0"], "left")
        for k, at in zip(range(first, last + 1), starts, strict=True):
            self._raw.setdefault(k, series[int(at) : int(at) + BLOCK])

    async def points(self, lo: int, hi: int) -> np.ndarray:
        """Raw points at positions [lo, hi)."""
        if lo >= hi:
            return np.zeros(0, POINT)
        ks = range(lo // BLOCK, (hi - 1) // BLOCK + 1)
        await self._prefetch(ks)
        blocks = [await self.block(k) for k in ks]
        joined = np.concatenate(blocks)
        base = lo // BLOCK * BLOCK
        return joined[lo - base : hi - base]

    async def position(self, x: int, side: str) -> int:
        """np.searchsorted of x over the whole series' xs: the top level narrows it to a
        record's level-0 blocks, their first xs to one block, its points to the position."""
        k = 0
        if self.top is not None:
            top = await self.records(self.top, 0, self.sizes[self.top])
            i = int(np.searchsorted(top["x0"], x, "right")) - 1
            if i < 0:
                return 0
            a = i << self.top
            b = (i + 1) << self.top if i < top.size - 1 else self.sizes[0]
            firsts = (await self.records(0, a, b))["x0"]
            k = a + int(np.searchsorted(firsts, x, "right")) - 1
            if k == self.sizes[0] - 1 and self.tail.size and x >= self.tail["x"][0]:
                k += 1  # in the tail
        pts = await self.block(k)
        return k * BLOCK + int(np.searchsorted(pts["x"], x, side))  # type: ignore[call-overload]

    async def read(self, start: int | None, end: int | None, max_points: int) -> tuple[Series, int]:
        lo = 0 if start is None else await self.position(start, "left")
        hi = self.n if end is None else await self.position(end, "right")
        total = max(0, hi - lo)
        first, stop = lo + 1, hi - 1
        size = bucket_size(first, stop, (max_points - 2) // 2) if max_points >= 4 else 0
        if total <= max_points or max_points < 4 or size < BLOCK:
            # Few points per bucket: read the range itself.
            pts = await self.points(lo, hi)
            if total > max_points:
                pts = pts[downsample(pts["v"], max_points, lo)]
            return _series(pts), total
        starts = [first, *range((first // size + 1) * size, stop, size)]
        ends = [*starts[1:], stop]
        j = size.bit_length() - BLOCK.bit_length()
        have = j < len(self.sizes)
        chosen = [await self.points(lo, lo + 1)]
        full = [a % size == 0 and b - a == size and have for a, b in zip(starts, ends, strict=True)]
        # Only the first and the last bucket can be partial; the others are level records
        # (a series too short for this level has at most two buckets).
        for i in range(len(starts)):
            if not full[i]:
                chosen.append(await self.bucket(starts[i], ends[i]))
        i0 = 0 if full[0] else 1
        i1 = len(starts) if full[-1] else len(starts) - 1
        if have and i0 < i1:
            at = starts[i0] // size
            chosen.append(_extremes(await self.records(j, at, at + i1 - i0)))
        chosen.append(await self.points(hi - 1, hi))
        pts = np.concatenate(chosen)
        _, unique = np.unique(pts["x"], return_index=True)  # x strictly increases: x is position
        return _series(pts[unique]), total

    async def bucket(self, a: int, b: int) -> np.ndarray:
        """The minimum and maximum points of positions [a, b), from the largest aligned level
        records inside it and raw points at its ends, combined left to right."""
        pieces: list[np.ndarray] = []
        p = a
        while p < b:
            size = BLOCK
            if p % BLOCK or p + BLOCK > b or p // BLOCK >= (self.sizes[0] if self.sizes else 0):
                stop = min(b, (p // BLOCK + 1) * BLOCK)
                raw = await self.points(p, stop)
                rec = np.zeros(1, LEVEL)
                i, j = int(lows(raw["v"]).argmin()), int(highs(raw["v"]).argmax())
                for side, at in (("min", i), ("max", j)):
                    for f in ("v", "x", "t", "e"):
                        rec[f"{side}_{f}"] = raw[f][at]
                pieces.append(rec)
                p = stop
                continue
            j = 0
            while (
                p % (size * 2) == 0
                and p + size * 2 <= b
                and j + 1 < len(self.sizes)
                and p // (size * 2) < self.sizes[j + 1]
            ):
                size, j = size * 2, j + 1
            pieces.append(await self.records(j, p // size, p // size + 1))
            p += size
        best = pieces[0]
        for piece in pieces[1:]:
            best = merge(best, piece)
        return _extremes(best)


def _extremes(records: np.ndarray) -> np.ndarray:
    """The min and max points of level records, as POINT rows."""
    out = np.zeros(2 * records.size, POINT)
    for i, side in enumerate(("min", "max")):
        for f in ("v", "x", "t", "e"):
            out[f][i::2] = records[f"{side}_{f}"]
    return out


def _series(pts: np.ndarray) -> Series:
    return Series(pts["x"].copy(), pts["v"].copy(), pts["t"].copy(), pts["e"].copy())
