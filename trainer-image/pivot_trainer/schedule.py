"""Optimizers and per-epoch LR schedules (linear warmup, then none/cosine/step)."""

from __future__ import annotations

import math

import torch

from pivot_trainer.config import TrainConfig


def lr_factor(epoch_index: int, cfg: TrainConfig) -> float:
    """Multiplier of the base LR for a 0-based epoch: a pure function, so resume is exact."""
    warm = cfg.warmup_epochs
    if epoch_index < warm:
        # Ramps to the full LR on the first epoch after warmup; never starts at 0.
        return (epoch_index + 1) / (warm + 1)
    t = epoch_index - warm
    if cfg.scheduler == "cosine":
        span = max(1, cfg.epochs - warm)
        progress = min(1.0, t / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.scheduler == "step":
        return float(cfg.lr_gamma ** (t // cfg.lr_step_size))
    return 1.0


def build_optimizer(params: object, cfg: TrainConfig) -> torch.optim.Optimizer:
    lr, wd = cfg.learning_rate, cfg.weight_decay
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)  # type: ignore[arg-type]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)  # type: ignore[arg-type]
    return torch.optim.SGD(
        params,  # type: ignore[arg-type]
        lr=lr,
        momentum=cfg.momentum,
        weight_decay=wd,
        nesterov=cfg.momentum > 0,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch; the LR for epoch e (1-based) is base * lr_factor(e - 1)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(i, cfg))


def sync_lr(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, cfg: TrainConfig
) -> None:
    """Set the LR for the scheduler's current epoch from this config (after a resume, the
    config may differ from the checkpoint's, e.g. more epochs stretch a cosine schedule)."""
    scheduler.base_lrs = [cfg.learning_rate for _ in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = cfg.learning_rate * lr_factor(scheduler.last_epoch, cfg)
        group["initial_lr"] = cfg.learning_rate
