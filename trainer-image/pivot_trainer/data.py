"""Synthetic lesion-like segmentation data, generated deterministically from the config seed.

Each image is a noisy background with a smooth intensity gradient, 1-3 bright elliptical
blobs ("lesions") of random size, orientation and contrast, and 0-2 thin bright streaks that
are not lesions; the mask marks the lesion ellipses.
Nothing is downloaded, and the same (seed, split) always gives the same tensors.
A config may instead name npz shards in S3 or a mounted directory (`load_datasets`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pivot_trainer.checkpoint import make_s3_client
from pivot_trainer.config import ConfigError, TrainConfig
from pivot_trainer.runtime import Runtime

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


# -- datasets from npz shards (S3 or a mounted path) ----------------------------------------

SPLITS = ("train", "val")


def read_shards(blobs: Iterable[bytes], where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate npz shards, each with `images` and `masks` of shape (n, H, W) or
    (n, 1, H, W), into float32 (images, 0/1 masks) of shape (N, 1, H, W)."""
    images, masks = [], []
    for blob in blobs:
        with np.load(io.BytesIO(blob)) as shard:
            if "images" not in shard or "masks" not in shard:
                raise ConfigError(f"{where}: every shard needs arrays 'images' and 'masks'")
            images.append(shard["images"])
            masks.append(shard["masks"])
    if not images:
        raise ConfigError(f"{where}: no .npz shards found")
    x = torch.from_numpy(np.concatenate(images)).float()
    y = torch.from_numpy(np.concatenate(masks)).float()
    if x.ndim == 3:
        x, y = x[:, None], y[:, None]
    if x.ndim != 4 or x.shape[1] != 1 or x.shape != y.shape:
        raise ConfigError(
            f"{where}: images and masks must both be (n, H, W) or (n, 1, H, W), "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[-1] % 4 or x.shape[-2] % 4:
        raise ConfigError(f"{where}: image height and width must be multiples of 4")
    return x, (y > 0.5).float()


def _s3_blobs(client: Any, bucket: str, prefix: str) -> Iterator[bytes]:
    found: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".npz")]
    for key in sorted(found):  # shard order is data order: make it the names'
        yield bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def load_datasets(
    cfg: TrainConfig, rt: Runtime
) -> tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    """The train and val sets the config names (held in memory)."""
    ds = cfg.dataset
    if ds.source == "synthetic":
        return make_datasets(cfg.num_train, cfg.num_val, cfg.image_size, cfg.seed)
    out = []
    for split in SPLITS:
        if ds.source == "path":
            where = str(Path(ds.path) / split)
            blobs: Iterable[bytes] = (p.read_bytes() for p in sorted(Path(where).glob("*.npz")))
        else:
            bucket = ds.bucket or rt.s3_bucket
            if not bucket:
                raise ConfigError("dataset source s3 needs 'dataset.bucket' or PIVOT_S3_BUCKET")
            where = f"s3://{bucket}/{ds.prefix}/{split}/"
            blobs = _s3_blobs(make_s3_client(rt), bucket, f"{ds.prefix}/{split}/")
        out.append(torch.utils.data.TensorDataset(*read_shards(blobs, where)))
    return out[0], out[1]
