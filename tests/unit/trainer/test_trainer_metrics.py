"""Dice, pixel accuracy and their per-epoch aggregation on known tensors."""

from __future__ import annotations

import pytest
import torch

from pivot_trainer.metrics import PendingCounts, SegCounts, dice_score, pixel_accuracy


def test_dice_and_accuracy_known_values() -> None:
    pred = torch.tensor([[1, 1, 0, 0]])
    target = torch.tensor([[1, 0, 1, 0]])
    assert dice_score(pred, target) == pytest.approx(0.5)  # 2*1 / (2+2)
    assert pixel_accuracy(pred, target) == pytest.approx(0.5)
    assert dice_score(target, target) == 1.0
    assert pixel_accuracy(target, target) == 1.0
    assert dice_score(torch.zeros(4), torch.ones(4)) == 0.0


def test_dice_of_two_empty_masks_is_perfect() -> None:
    assert dice_score(torch.zeros(3, 3), torch.zeros(3, 3)) == 1.0
    assert SegCounts().dice == 1.0


def test_counts_aggregate_over_batches_like_one_big_batch() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 1, 8, 8, generator=g)
    targets = (torch.rand(10, 1, 8, 8, generator=g) > 0.7).float()
    counts = SegCounts()
    counts.update(logits[:3], targets[:3], loss=1.0)
    counts.update(logits[3:], targets[3:], loss=2.0)
    pred = logits > 0
    assert counts.dice == pytest.approx(dice_score(pred, targets))
    assert counts.accuracy == pytest.approx(pixel_accuracy(pred, targets))
    assert counts.loss == pytest.approx((3 * 1.0 + 7 * 2.0) / 10)  # sample-weighted
    assert counts.pixels == 640


def test_pending_counts_drain_to_what_per_batch_updates_sum_to() -> None:
    """The training loop keeps its counts on the device and drains them at the epoch's end:
    the same sums, to the last bit, as syncing every batch."""
    g = torch.Generator().manual_seed(5)
    batches = [
        (torch.randn(4, 1, 8, 8, generator=g), (torch.rand(4, 1, 8, 8, generator=g) > 0.7).float())
        for _ in range(6)
    ]
    losses = [torch.rand((), generator=g) for _ in batches]  # float32, as a loss is
    synced, drained = SegCounts(), SegCounts()
    pending = PendingCounts()
    for (logits, targets), loss in zip(batches, losses, strict=True):
        synced.update(logits, targets, float(loss.item()))
        pending.add(logits, targets, loss)
    pending.drain(drained)
    assert drained == synced
    pending.drain(drained)  # nothing left: a second drain adds nothing
    assert drained == synced
    pending.add(*batches[0], losses[0])
    pending.drain(drained)
    assert drained.samples == synced.samples + 4
