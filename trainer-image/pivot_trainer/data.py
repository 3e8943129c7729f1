"""Synthetic lesion-like segmentation data, generated deterministically from the config seed.

Each image is a noisy background with a smooth intensity gradient, 1-3 bright elliptical
blobs ("lesions") of random size, orientation and contrast, and 0-2 thin bright streaks that
are not lesions; the mask marks the lesion ellipses.
Nothing is downloaded, and the same (seed, split) always gives the same tensors.
"""

from __future__ import annotations

import math

import torch

MAX_BLOBS = 3
MAX_VESSELS = 2
TRAIN, VAL = 0, 1


def split_seed(seed: int, split: int) -> int:
    # Distinct, well-separated streams for train and val from one user seed.
    return (seed * 1_000_003 + split * 7_919 + 17) % (2**63 - 1)


def make_split(n: int, size: int, seed: int, split: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, masks), both float32 of shape (n, 1, size, size); masks are 0/1."""
    g = torch.Generator().manual_seed(split_seed(seed, split))

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy = coords[None, None, :, None]
    xx = coords[None, None, None, :]

    def ellipses(k: int, r_lo: float, r_hi: float, rx_lo: float, rx_hi: float) -> torch.Tensor:
        """Squared normalised radius (n, k, size, size) of k random rotated ellipses."""
        cy, cx = uniform(0.15, 0.85, n, k), uniform(0.15, 0.85, n, k)
        ry, rx = uniform(r_lo, r_hi, n, k), uniform(rx_lo, rx_hi, n, k)
        theta = uniform(0.0, math.pi, n, k)
        dy, dx = yy - cy[..., None, None], xx - cx[..., None, None]
        cos, sin = theta.cos()[..., None, None], theta.sin()[..., None, None]
        u = (dx * cos + dy * sin) / rx[..., None, None]
        v = (-dx * sin + dy * cos) / ry[..., None, None]
        return u * u + v * v

    # Lesions: 1-3 roundish blobs, in the mask.
    present = torch.arange(MAX_BLOBS)[None, :] < torch.randint(
        1, MAX_BLOBS + 1, (n, 1), generator=g
    )
    on = present[..., None, None]
    r2 = ellipses(MAX_BLOBS, 0.05, 0.14, 0.05, 0.14)
    mask = ((r2 <= 1.0) & on).any(dim=1, keepdim=True).float()
    # Bright centre fading past the rim, like a lesion; the rim itself is ambiguous on purpose.
    contrast = uniform(0.5, 1.1, n, MAX_BLOBS)[..., None, None]
    lesions = (contrast * torch.exp(-1.2 * r2) * on).sum(dim=1, keepdim=True)

    # Distractors: 0-2 thin bright streaks ("vessels") as bright as lesions but not in the
    # mask, so intensity alone is not enough and the model has to learn shape.
    vessel_on = (
        torch.arange(MAX_VESSELS)[None, :] < torch.randint(0, MAX_VESSELS + 1, (n, 1), generator=g)
    )[..., None, None]
    v2 = ellipses(MAX_VESSELS, 0.012, 0.03, 0.25, 0.45)
    v_contrast = uniform(0.5, 1.1, n, MAX_VESSELS)[..., None, None]
    vessels = (v_contrast * torch.exp(-1.2 * v2) * vessel_on).sum(dim=1, keepdim=True)

    grad_y, grad_x = uniform(-0.4, 0.4, n), uniform(-0.4, 0.4, n)
    background = grad_y[:, None, None, None] * yy[:, :1] + grad_x[:, None, None, None] * xx[:, :1]
    noise = 0.3 * torch.randn(n, 1, size, size, generator=g)
    images = (background + lesions + vessels + noise).float()
    return images, mask


def make_datasets(
    num_train: int, num_val: int, size: int, seed: int
) -> tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    train = make_split(num_train, size, seed, TRAIN)
    val = make_split(num_val, size, seed, VAL)
    return torch.utils.data.TensorDataset(*train), torch.utils.data.TensorDataset(*val)
