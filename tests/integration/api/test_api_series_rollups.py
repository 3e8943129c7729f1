"""History reads from min/max rollups in Redis: a fresh API (nothing cached) answers exactly
what a warm one does, which is `downsample` of the raw points; streams written before rollups
get them on first read; rollups cost at most a tenth of the raw stream's memory."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np

from pivot_api.metrics import rollups
from pivot_api.metrics.series import SeriesCache, downsample
from pivot_schema import keys
from pivot_trainer.sink import RecordSink
from tests.support.waiting import eventually

from .alerting import running_session
from .api_platform import Platform, PlatformFactory

POINTS = 200_000
RANGES: list[tuple[int | None, int | None]] = [
    (None, None),
    (1, POINTS),
    (12_345, 187_654),
    (100, 5_000),
    (99_999, 100_130),
    (None, 777),
    (150_001, None),
    (5, 5),
]
MAX_POINTS = [2, 3, 4, 5, 50, 1000, 4097]


def _loss(i: int) -> float:
    if i % 9_973 == 0:
        return math.nan  # a null must lose every bucket it shares
    value = round(1.0 / (1 + i / 5000), 2)  # rounded: many equal values, the first must win
    return value + (3.0 if i % 49_999 == 0 else 0.0)


def _write_steps(url: str, sid: str, spool: Path) -> None:
    """Through the trainer's own sink: its column entries and idempotent append script."""
    sink = RecordSink(url, sid, spool_dir=spool)
    for i in range(1, POINTS + 1):
        sink.step(1 + (i - 1) // 10_000, 1 + (i - 1) % 10_000, i, _loss(i))
        if i % 50_000 == 0:
            assert sink.flush(force=True)
    assert sink.close(30)


def _expected(full: dict[str, Any], x: str, lo: int | None, hi: int | None, n: int) -> Any:
    """`downsample` of the raw points (the full series, read without max_points)."""
    xs = np.array(full[x])
    a = 0 if lo is None else int(np.searchsorted(xs, lo, "left"))
    b = xs.size if hi is None else int(np.searchsorted(xs, hi, "right"))
    values = np.array([math.nan if v is None else v for v in full["values"][a:b]])
    picked = [a + i for i in downsample(values, n, a).tolist()] if b - a > n else range(a, b)
    return {k: [full[k][i] for i in picked] for k in full if isinstance(full[k], list)}, b - a


async def test_a_fresh_api_reads_exactly_what_a_warm_one_does(
    platform_factory: PlatformFactory, redis_server: Any, tmp_path: Path
) -> None:
    async with platform_factory() as p:
        sid = (await p.create())["session_id"]
    await asyncio.to_thread(_write_steps, redis_server.url, sid, tmp_path / "spool")
    # The first API builds the rollups, then reads warm; a second one starts with nothing.
    async with platform_factory() as p:
        first = [await _read_all(p, sid) for _ in range(2)]
        full = (await p.http.get(f"/api/v1/metrics/{sid}/steps?metric_name=train_loss")).json()
    async with platform_factory() as fresh:
        assert fresh.app.state.metrics.cached_points == 0
        cold = await _read_all(fresh, sid)
        assert fresh.app.state.metrics.cached_points == 0  # answered without the column cache
    assert first[0] == first[1] == cold
    assert full["total_points"] == POINTS
    for (lo, hi, n), body in cold:
        expected, total = _expected(full, "steps", lo, hi, n)
        assert body["total_points"] == total, (lo, hi, n)
        for k in ("steps", "epochs", "timestamps", "values"):
            assert body[k] == expected[k], (lo, hi, n, k)
        assert len(body["steps"]) <= n


async def _read_all(p: Platform, sid: str) -> list[Any]:
    out = []
    for lo, hi in RANGES:
        for n in MAX_POINTS:
            query = f"metric_name=train_loss&max_points={n}"
            query += f"&start_step={lo}" if lo is not None else ""
            query += f"&end_step={hi}" if hi is not None else ""
            resp = await p.http.get(f"/api/v1/metrics/{sid}/steps?{query}")
            assert resp.status_code == 200, resp.text
            out.append(((lo, hi, n), resp.json()))
    return out


async def _xadd_epochs(p: Platform, sid: str, first: int, last: int) -> None:
    pipe = p.redis.pipeline()
    for epoch in range(first, last + 1):
        metrics = {"val_loss": round(math.sin(epoch / 300), 2)}
        if epoch % 7:
            metrics["accuracy"] = epoch / last  # a metric not in every record
        if epoch % 1001 == 0:
            metrics["val_loss"] = math.nan
        record = keys.epoch_record(epoch, metrics, f"2026-12-0{1 + epoch % 3}T00:00:00Z")
        pipe.xadd(keys.metrics_stream(sid), keys.encode_record(record))
    await pipe.execute()


async def test_a_stream_written_before_rollups_is_rolled_up_on_first_read(
    platform_factory: PlatformFactory,
) -> None:
    # No background keeper here: the first read is what rolls the stream up.
    async with platform_factory(rollup_interval_s=0) as p:
        sid = (await p.create())["session_id"]
        await _xadd_epochs(p, sid, 1, 30_000)
        assert not await p.redis.exists(keys.series_rollups(sid))
    last = 30_000
    for metric in ("val_loss", "accuracy"):
        for grow in (False, True):
            async with platform_factory(rollup_interval_s=0) as p:
                if grow:  # more records after the rollups were built: they are caught up
                    await _xadd_epochs(p, sid, last + 1, last + 777)
                    last += 777
                url = f"/api/v1/metrics/{sid}/history?metric_name={metric}"
                full = (await p.http.get(url)).json()
            async with platform_factory(rollup_interval_s=0) as p:
                for lo, hi, n in [(None, None, 1000), (17, 29_000, 333), (2, 20_000, 4)]:
                    query = f"&max_points={n}&start_epoch={lo or 0}&end_epoch={hi or 10**9}"
                    body = (await p.http.get(url + query)).json()
                    expected, total = _expected(full, "epochs", lo, hi, n)
                    assert body["total_points"] == total
                    assert {k: body[k] for k in expected} == expected
                assert p.app.state.metrics.cached_points == 0
                assert await p.redis.exists(keys.series_rollups(sid))


async def test_a_series_with_repeated_epochs_is_read_as_before(
    platform_factory: PlatformFactory,
) -> None:
    async with platform_factory() as p:
        sid = (await p.create())["session_id"]
        await _xadd_epochs(p, sid, 1, 3000)
        await _xadd_epochs(p, sid, 2000, 2500)  # written around the append script: repeats
        url = f"/api/v1/metrics/{sid}/history?metric_name=val_loss"
        full = (await p.http.get(url)).json()
        assert full["epochs"] == list(range(1, 3001))
        body = (await p.http.get(url + "&max_points=100")).json()
        expected, _ = _expected(full, "epochs", None, None, 100)
        assert {k: body[k] for k in expected} == expected


async def test_rollups_cost_at_most_a_tenth_of_the_stream(
    platform_factory: PlatformFactory, redis_server: Any, tmp_path: Path
) -> None:
    async with platform_factory() as p:
        sid = (await p.create())["session_id"]
        await asyncio.to_thread(_write_steps, redis_server.url, sid, tmp_path / "spool")
        body = (await p.http.get(f"/api/v1/metrics/{sid}/steps?max_points=100")).json()
        assert body["total_points"] == POINTS
        raw = await p.redis.memory_usage(keys.steps_stream(sid), samples=0)
        rollups = await p.redis.memory_usage(keys.series_rollups(sid), samples=0)
        assert rollups <= raw / 10, (rollups, raw)


async def test_rollups_caught_up_in_steps_across_chunks_read_as_the_raw_series(
    platform_factory: PlatformFactory, monkeypatch: Any
) -> None:
    monkeypatch.setattr(rollups, "CHUNK", 3)  # levels of many small fields, as 10M points give
    monkeypatch.setattr(rollups, "_PAGE", 700)  # and long catch-ups saving their progress
    monkeypatch.setattr(rollups, "_SAVE_PAGES", 2)
    rng = np.random.default_rng(5)
    async with platform_factory() as p:
        sid = (await p.create())["session_id"]
        last = 0
        for grow in (1000, 5000, 129, 1, 9000):
            await _xadd_epochs(p, sid, last + 1, last + grow)
            last += grow
            url = f"/api/v1/metrics/{sid}/history?metric_name=val_loss"
            p.app.state.metrics._series = SeriesCache(p.redis, max_points=10**7)  # re-read all
            full = (await p.http.get(url)).json()
            for _ in range(6):
                lo, hi = sorted(int(v) for v in rng.integers(0, last + 5, 2))
                n = int(rng.choice([4, 7, 64, 500]))
                body = await p.http.get(f"{url}&max_points={n}&start_epoch={lo}&end_epoch={hi}")
                expected, total = _expected(full, "epochs", lo, hi, n)
                assert body.json()["total_points"] == total, body.text
                assert {k: body.json()[k] for k in expected} == expected, (lo, hi, n)


async def test_running_sessions_are_rolled_up_as_the_trainer_writes(
    platform_factory: PlatformFactory, redis_server: Any, tmp_path: Path
) -> None:
    """Maintained at ingest: with nobody reading, the leader folds a running session's new
    points into its rollups, so the first read has nothing left to fold in."""
    async with platform_factory(rollup_interval_s=0.1) as p:
        sid = await running_session(p)
        sink = RecordSink(redis_server.url, sid, spool_dir=tmp_path / "spool")
        for i in range(1, 3001):
            sink.step(1, i, i, 1.0 / i)
        assert sink.flush(force=True)
        for epoch in (1, 2):  # an epoch, then more steps: both streams, more than one round
            await _xadd_epochs(p, sid, epoch, epoch)
            for i in range(3001 + 500 * epoch, 3501 + 500 * epoch):
                sink.step(2, i, i, 1.0 / i)
            assert sink.flush(force=True)
        assert sink.close(30)

        async def folded_in(stream: str, key: str) -> bool:
            tip = (await p.redis.xrevrange(key, count=1))[0][0]
            raw = await p.redis.hget(
                keys.series_rollups(sid), keys.rollup_field(stream, None, "meta")
            )
            meta = rollups.Meta.loads(raw)
            return meta is not None and meta.cursor == tip.decode()

        await eventually(lambda: folded_in("steps", keys.steps_stream(sid)), what="steps")
        await eventually(lambda: folded_in("metrics", keys.metrics_stream(sid)), what="epochs")
        assert p.app.state.metrics.cached_points == 0  # no read did it


async def test_streams_written_before_rollups_are_rolled_up_in_the_background(
    platform_factory: PlatformFactory,
) -> None:
    """A session that is not running, whose stream has no rollups (written before they
    existed, or while no API ran), is rolled up by the keeper without waiting for a reader."""
    async with platform_factory(rollup_interval_s=0) as p:
        sid = (await p.create())["session_id"]
        await _xadd_epochs(p, sid, 1, 5_000)
    async with platform_factory(rollup_interval_s=0.05) as p:

        async def folded_in() -> bool:
            tip = (await p.redis.xrevrange(keys.metrics_stream(sid), count=1))[0][0]
            raw = await p.redis.hget(
                keys.series_rollups(sid), keys.rollup_field("metrics", None, "meta")
            )
            meta = rollups.Meta.loads(raw)
            return meta is not None and meta.cursor == tip.decode()

        # The namespace holds every earlier test's sessions too: they are rolled up as well.
        await eventually(folded_in, within=30, what="the old stream rolled up")
        assert p.app.state.metrics.cached_points == 0  # no read did it
