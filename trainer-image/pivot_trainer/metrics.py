"""Pixel accuracy and dice, computed from counts so an epoch aggregates exactly."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def dice_score(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Dice of two binary masks; two empty masks agree perfectly (1.0)."""
    p, t = pred.bool(), target.bool()
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((pred.bool() == target.bool()).float().mean())


@dataclass
class SegCounts:
    """Running sums over batches: loss (sample-weighted), pixel agreement and overlap."""

    loss_sum: float = 0.0
    samples: int = 0
    correct: int = 0
    pixels: int = 0
    intersection: int = 0
    pred_pos: int = 0
    target_pos: int = 0

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: float) -> None:
        pred = logits.detach() > 0
        tgt = targets.detach() > 0.5
        n = int(targets.shape[0])
        self.loss_sum += loss * n
        self.samples += n
        # One host sync for all counts (matters on GPU).
        stats = torch.stack(
            [(pred == tgt).sum(), (pred & tgt).sum(), pred.sum(), tgt.sum()]
        ).tolist()
        self.correct += int(stats[0])
        self.pixels += tgt.numel()
        self.intersection += int(stats[1])
        self.pred_pos += int(stats[2])
        self.target_pos += int(stats[3])

    def merge(self, other: SegCounts) -> None:
        """Add another shard's counts (other ranks, in distributed training)."""
        self.loss_sum += other.loss_sum
        self.samples += other.samples
        self.correct += other.correct
        self.pixels += other.pixels
        self.intersection += other.intersection
        self.pred_pos += other.pred_pos
        self.target_pos += other.target_pos

    @property
    def loss(self) -> float:
        return self.loss_sum / self.samples if self.samples else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.pixels if self.pixels else float("nan")

    @property
    def dice(self) -> float:
        denom = self.pred_pos + self.target_pos
        return 1.0 if denom == 0 else 2.0 * self.intersection / denom


class PendingCounts:
    """SegCounts' sums of the batches since the last `drain`, kept on the batches' device:
    adding a batch queues a few reductions and never waits for the GPU (a host sync per step
    would stall the CPU from queueing the next step's kernels); `drain` syncs once."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._sums: torch.Tensor | None = None  # loss_sum, correct, intersection, pred, target
        self._samples = 0
        self._pixels = 0

    def add(self, logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        pred = logits.detach() > 0
        tgt = targets.detach() > 0.5
        n = int(targets.shape[0])
        # float64 holds the counts exactly (to 2**53) and the loss sum as SegCounts does.
        row = torch.stack(
            [loss.detach().double() * n]
            + [t.sum().double() for t in (pred == tgt, pred & tgt, pred, tgt)]
        )
        self._sums = row if self._sums is None else self._sums + row
        self._samples += n
        self._pixels += tgt.numel()

    def drain(self, into: SegCounts) -> None:
        """Add what is pending to `into` and start over."""
        if self._sums is None:
            return
        loss_sum, correct, intersection, pred_pos, target_pos = self._sums.tolist()
        into.loss_sum += loss_sum
        into.samples += self._samples
        into.correct += int(correct)
        into.pixels += self._pixels
        into.intersection += int(intersection)
        into.pred_pos += int(pred_pos)
        into.target_pos += int(target_pos)
        self._reset()
