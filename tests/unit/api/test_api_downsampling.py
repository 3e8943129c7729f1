"""Downsampling of long metric series: bounded, deterministic, extremes kept."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pivot_api.metrics.series import downsample, ts_text, ts_us


def test_a_short_series_is_returned_whole() -> None:
    assert downsample(np.arange(10.0), 10).tolist() == list(range(10))


@pytest.mark.parametrize("max_points", [2, 3, 4, 5, 100, 999])
def test_never_more_than_max_points_and_always_the_ends(max_points: int) -> None:
    values = np.sin(np.arange(10_007) / 50.0)
    picked = downsample(values, max_points)
    assert len(picked) <= max_points
    assert picked[0] == 0 and picked[-1] == values.size - 1
    assert np.all(np.diff(picked) > 0)


def test_every_spike_survives() -> None:
    values = np.zeros(1_000_000)
    spikes = [1234, 456_789, 999_001]
    values[spikes] = [7.0, -3.0, 9.0]
    picked = downsample(values, 1000)
    assert set(spikes) <= set(picked.tolist())


def test_nulls_do_not_win_a_bucket() -> None:
    values = np.array([0.0] + [np.nan, 2.0, np.nan, -1.0] * 25 + [0.0])
    picked = downsample(values, 10)
    assert not np.isnan(values[picked]).any()


def test_the_same_series_gives_the_same_points() -> None:
    values = np.random.default_rng(7).normal(size=50_000)
    assert downsample(values, 300).tolist() == downsample(values.copy(), 300).tolist()


def _by_definition(values: np.ndarray, max_points: int, offset: int) -> list[int]:
    """The first and last point, and per bucket the first minimum and the first maximum (nulls
    losing), buckets being the fewest power-of-two blocks of positions, aligned to position 0
    of the whole series (`offset` is the first value's position), that fit max_points."""
    n = values.size
    inner = range(offset + 1, offset + n - 1)
    size = 1
    while len({p // size for p in inner}) > (max_points - 2) // 2:
        size *= 2
    picks = {0, n - 1}
    for block in sorted({p // size for p in inner}):
        idx = [p - offset for p in inner if p // size == block]
        low = [math.inf if math.isnan(values[i]) else values[i] for i in idx]
        high = [-math.inf if math.isnan(values[i]) else values[i] for i in idx]
        picks |= {idx[low.index(min(low))], idx[high.index(max(high))]}
    return sorted(picks)


@pytest.mark.parametrize("seed", range(12))
def test_buckets_are_aligned_power_of_two_blocks_with_their_min_and_max(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 3000))
    values = rng.integers(0, 5, n).astype(float)  # many equal values: the first must win
    values[rng.random(n) < 0.1] = np.nan
    values[: int(rng.integers(0, 40))] = np.nan  # a bucket of nulls only keeps its first
    max_points = int(rng.integers(4, n + 1))
    offset = int(rng.integers(0, 10_000))
    assert downsample(values, max_points, offset).tolist() == _by_definition(
        values, max_points, offset
    )


@pytest.mark.parametrize(
    "stamp", ["2025-12-19T10:31:00Z", "2026-11-25T21:21:16.449002Z", "1969-07-20T20:17:40Z"]
)
def test_timestamps_read_back_as_written(stamp: str) -> None:
    assert ts_text(ts_us(stamp)) == stamp


def test_an_unparseable_timestamp_reads_back_as_null() -> None:
    assert ts_text(ts_us("yesterday")) is None
