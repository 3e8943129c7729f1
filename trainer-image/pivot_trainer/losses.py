"""Segmentation losses on logits: focal (default), soft dice, and plain BCE."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), mean over pixels; alpha < 0 disables weighting."""
    logits, targets = logits.float(), targets.float()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft dice per image, averaged; `smooth` keeps empty masks finite."""
    p = torch.sigmoid(logits.float()).flatten(1)
    t = targets.float().flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def build_loss(name: str, *, alpha: float = 0.25, gamma: float = 2.0) -> LossFn:
    if name == "focal":
        return lambda lg, tg: focal_loss(lg, tg, alpha, gamma)
    if name == "dice":
        return dice_loss
    if name == "bce":
        return bce_loss
    raise ValueError(f"unknown loss {name!r}")
