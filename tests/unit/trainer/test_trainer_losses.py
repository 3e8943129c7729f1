"""Focal (and the other) losses behave as losses should."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pivot_trainer.losses import bce_loss, build_loss, dice_loss, focal_loss

TARGETS = torch.tensor([[1.0, 0.0, 1.0, 0.0]])


def test_focal_is_small_when_right_and_large_when_wrong() -> None:
    right = focal_loss(TARGETS * 20 - 10, TARGETS)
    wrong = focal_loss(10 - TARGETS * 20, TARGETS)
    assert 0 <= float(right) < 1e-6
    assert float(wrong) > 1.0


def test_focal_without_focusing_or_weighting_is_bce() -> None:
    logits = torch.randn(2, 1, 5, 5)
    targets = (torch.rand(2, 1, 5, 5) > 0.5).float()
    assert focal_loss(logits, targets, alpha=-1, gamma=0) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, targets)), rel=1e-6
    )


def test_focal_down_weights_easy_pixels_more_than_hard_ones() -> None:
    easy = torch.tensor([[3.0]])
    hard = torch.tensor([[-0.5]])
    one = torch.tensor([[1.0]])
    ratio_easy = focal_loss(easy, one, alpha=-1) / bce_loss(easy, one)
    ratio_hard = focal_loss(hard, one, alpha=-1) / bce_loss(hard, one)
    assert float(ratio_easy) < float(ratio_hard) < 1.0


def test_losses_give_finite_gradients() -> None:
    for name in ("focal", "dice", "bce"):
        logits = torch.randn(2, 1, 4, 4, requires_grad=True)
        loss = build_loss(name)(logits, (torch.rand(2, 1, 4, 4) > 0.5).float())
        loss.backward()
        assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())


def test_dice_loss_bounds() -> None:
    assert float(dice_loss(TARGETS * 40 - 20, TARGETS)) < 0.01
    assert float(dice_loss(20 - TARGETS * 40, TARGETS)) > 0.6
