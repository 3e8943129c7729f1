"""LR schedules, and which checkpoints retention removes."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from pivot_trainer.checkpoint import Committed, order_key, to_delete
from pivot_trainer.config import parse_config
from pivot_trainer.schedule import build_optimizer, build_scheduler, lr_factor


def factors(**cfg: object) -> list[float]:
    c = parse_config({"epochs": 6, **cfg})
    return [lr_factor(i, c) for i in range(c.epochs)]


def test_constant_warmup_cosine_step() -> None:
    assert factors() == [1.0] * 6
    assert factors(warmup_epochs=2)[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    cos = factors(scheduler="cosine", warmup_epochs=1)
    assert cos[0] == 0.5 and cos[1] == 1.0
    assert all(a > b for a, b in itertools.pairwise(cos[1:]))
    assert factors(scheduler="cosine", min_lr_ratio=0.1)[-1] > 0.1
    assert factors(scheduler="step", lr_step_size=2, lr_gamma=0.5) == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_scheduler_drives_the_optimizer_per_epoch() -> None:
    cfg = parse_config({"epochs": 4, "learning_rate": 0.1, "scheduler": "step", "lr_step_size": 1})
    for name in ("adam", "adamw", "sgd"):
        params = [torch.nn.Parameter(torch.zeros(1))]
        opt = build_optimizer(params, dataclasses.replace(cfg, optimizer=name))
        sched = build_scheduler(opt, cfg)
        seen = []
        for _ in range(3):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert seen == pytest.approx([0.1, 0.05, 0.025])


def test_order_key() -> None:
    assert order_key("ckpt_s-1_e00003") == (3, 0)
    assert order_key("ckpt_s-1_e00003s000012") == (3, 12)
    assert order_key("ckpt_other") is None


def test_retention_keeps_latest_newest_and_best() -> None:
    cs = [
        Committed("e1", 1, 0, 0.9),  # best
        Committed("e2", 2, 0, 0.5),
        Committed("e2p", 2, 7),  # stale mid-epoch checkpoint
        Committed("e3", 3, 0, 0.4),
        Committed("e4", 4, 0, 0.6),
    ]
    assert to_delete(cs, "e4", keep_last=2, keep_best=1, mode="max") == ["e2", "e2p"]
    assert to_delete(cs, "e4", keep_last=1, keep_best=0, mode="max") == ["e1", "e2", "e2p", "e3"]
    assert to_delete(cs, "e4", keep_last=1, keep_best=1, mode="min") == ["e1", "e2", "e2p"]
    # Without keep_last everything stays but superseded mid-epoch checkpoints.
    assert to_delete(cs, "e4", keep_last=None, keep_best=1, mode="max") == ["e2p"]
    # The latest is never deleted, even a mid-epoch one.
    assert "e2p" not in to_delete(cs[:3], "e2p", keep_last=1, keep_best=0, mode="max")
