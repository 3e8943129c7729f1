"""Downsampling of long metric series: bounded, deterministic, extremes kept."""

from __future__ import annotations

import numpy as np
import pytest

from pivot_api.services.series import downsample, ts_text, ts_us


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


@pytest.mark.parametrize(
    "stamp", ["2025-12-19T10:31:00Z", "2026-11-25T21:21:16.449002Z", "1969-07-20T20:17:40Z"]
)
def test_timestamps_read_back_as_written(stamp: str) -> None:
    assert ts_text(ts_us(stamp)) == stamp


def test_an_unparseable_timestamp_reads_back_as_null() -> None:
    assert ts_text(ts_us("yesterday")) is None
