"""The API keeps the cyclic GC out of the request tail: startup's objects frozen, young
collections after 50,000 allocations (the latency it buys is in bench/README.md)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pivot_api.app import GC_GEN0_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    yield
    gc.set_threshold(*threshold)
    if not frozen:
        gc.unfreeze()


def test_startup_objects_are_frozen_and_young_collections_are_rarer(restored_gc: None) -> None:
    _, gen1, gen2 = gc.get_threshold()
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, gen1, gen2)
    frozen = gc.get_freeze_count()
    tune_gc()  # a second app in the same process freezes nothing more
    assert gc.get_freeze_count() == frozen
