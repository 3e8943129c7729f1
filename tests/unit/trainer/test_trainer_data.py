"""The synthetic lesion data: deterministic from the seed, sane masks."""

from __future__ import annotations

import torch

from pivot_trainer.data import TRAIN, VAL, make_datasets, make_split


def test_same_seed_same_tensors() -> None:
    a_img, a_mask = make_split(16, 32, seed=7, split=TRAIN)
    b_img, b_mask = make_split(16, 32, seed=7, split=TRAIN)
    assert torch.equal(a_img, b_img)
    assert torch.equal(a_mask, b_mask)


def test_generation_ignores_global_rng() -> None:
    torch.manual_seed(1)
    a, _ = make_split(4, 16, seed=3, split=TRAIN)
    torch.manual_seed(2)
    torch.rand(100)
    b, _ = make_split(4, 16, seed=3, split=TRAIN)
    assert torch.equal(a, b)


def test_seed_and_split_change_the_data() -> None:
    base, _ = make_split(8, 16, seed=1, split=TRAIN)
    other_seed, _ = make_split(8, 16, seed=2, split=TRAIN)
    val, _ = make_split(8, 16, seed=1, split=VAL)
    assert not torch.equal(base, other_seed)
    assert not torch.equal(base, val)


def test_shapes_and_masks() -> None:
    train, val = make_datasets(num_train=20, num_val=6, size=24, seed=0)
    assert len(train) == 20 and len(val) == 6
    images, masks = train.tensors
    assert images.shape == masks.shape == (20, 1, 24, 24)
    assert images.dtype == masks.dtype == torch.float32
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    # Every image has at least one lesion, and lesions are a minority of pixels.
    per_image = masks.flatten(1).mean(1)
    assert bool((per_image > 0).all())
    assert 0.01 < float(per_image.mean()) < 0.3
    # Lesion pixels are brighter on average than the rest.
    assert float(images[masks > 0].mean()) > float(images[masks == 0].mean()) + 0.3
