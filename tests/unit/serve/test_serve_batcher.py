"""Dynamic batching over a real (tiny, untrained) UNet on its own inference thread."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from pivot_trainer.model import UNet
from pivot_trainer.serve.batcher import Batcher
from pivot_trainer.serve.metrics import ServeMetrics
from pivot_trainer.serve.model import Predictor, build


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save({"model": UNet(1, 2).state_dict(), "config": {"base_channels": 2}}, buf)
    # A low threshold: an untrained net's maps still have candidates to compare.
    return Predictor(
        build(buf.getvalue()), device="cpu", threshold=0.45, max_batch_size=4, compile=False
    )


@pytest.fixture
def thread() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1)
    yield pool
    pool.shutdown()


def images(n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((size, size)).astype(np.float32) for _ in range(n)]


async def started(predictor: Predictor, pool: ThreadPoolExecutor, delay_s: float) -> Batcher:
    metrics = ServeMetrics("m", "c", "0" * 64)
    batcher = Batcher(predictor.run, pool, max_batch_size=4, max_delay_s=delay_s, metrics=metrics)
    batcher.start()
    return batcher


async def test_images_queued_together_run_together_up_to_the_limit(
    predictor: Predictor, thread: ThreadPoolExecutor
) -> None:
    batcher = await started(predictor, thread, delay_s=0.2)
    try:
        batch = images(6, 16, seed=1)
        done = await asyncio.gather(*(batcher.submit(a, want_mask=False) for a in batch))
    finally:
        await batcher.stop()
    # Six queued at once: a full batch of 4, then the 2 left once their delay is up.
    assert [d.batch_size for d in done] == [4, 4, 4, 4, 2, 2]
    # Each answer is its own image's (what a batch of one gives for it).
    for image, d in zip(batch, done, strict=True):
        alone = predictor.run([image], want_mask=False).predictions[0]
        assert d.prediction.shape == (16, 16)
        assert len(d.prediction.candidates) == len(alone.candidates) > 0
        for a, b in zip(d.prediction.candidates, alone.candidates, strict=True):
            assert a["area"] == b["area"] and a["x"] == pytest.approx(b["x"])
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)
    assert all(d.queue_s >= 0 and d.inference_s > 0 for d in done)


async def test_shapes_run_separately_and_masks_go_to_who_asked(
    predictor: Predictor, thread: ThreadPoolExecutor
) -> None:
    batcher = await started(predictor, thread, delay_s=0.0)
    try:
        small, big = images(2, 8, seed=2), images(2, 16, seed=3)
        done = await asyncio.gather(
            batcher.submit(small[0], want_mask=True),
            batcher.submit(big[0], want_mask=False),
            batcher.submit(small[1], want_mask=False),
            batcher.submit(big[1], want_mask=True),
        )
    finally:
        await batcher.stop()
    assert [d.prediction.shape for d in done] == [(8, 8), (16, 16), (8, 8), (16, 16)]
    assert [d.batch_size for d in done] == [2, 2, 2, 2]
    assert [d.prediction.mask is not None for d in done] == [True, False, False, True]
    mask = done[3].prediction.mask
    assert mask is not None and mask.shape == (16, 16) and mask.dtype == np.uint8


async def test_a_failed_run_fails_its_requests_and_the_batcher_goes_on(
    predictor: Predictor, thread: ThreadPoolExecutor
) -> None:
    metrics_batcher = await started(predictor, thread, delay_s=0.0)
    try:
        # 6 x 6 is no multiple of 4: the UNet itself raises (images.decode never lets
        # one through; this is what an out-of-memory run would look like).
        with pytest.raises(RuntimeError):
            await metrics_batcher.submit(np.zeros((6, 6), np.float32), want_mask=False)
        after = await metrics_batcher.submit(images(1, 8, seed=4)[0], want_mask=False)
    finally:
        await metrics_batcher.stop()
    assert after.batch_size == 1 and after.prediction.shape == (8, 8)


async def test_a_cancelled_request_is_skipped(
    predictor: Predictor, thread: ThreadPoolExecutor
) -> None:
    batcher = await started(predictor, thread, delay_s=0.0)
    try:
        gone = batcher.submit(images(1, 8, seed=5)[0], want_mask=False)
        gone.cancel()
        kept = await batcher.submit(images(1, 8, seed=6)[0], want_mask=False)
    finally:
        await batcher.stop()
    assert kept.batch_size == 1
