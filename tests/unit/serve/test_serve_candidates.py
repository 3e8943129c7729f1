"""The server's lesion candidates are the components the trainer's FROC scores."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pivot_trainer.data import make_split
from pivot_trainer.froc import detections
from pivot_trainer.model import UNet
from pivot_trainer.serve.images import UNET_STRIDE
from pivot_trainer.serve.model import find_candidates


def blobby_probs(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random maps in [0, 1] with several separate blobs above 0.5 each."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, size, size, generator=g)
    smooth = F.avg_pool2d(noise, 5, stride=1, padding=2)
    return torch.sigmoid(smooth * 6)[:, 0]


def flood_fill(probs: np.ndarray, threshold: float) -> list[dict[str, float]]:
    """An independent 8-connected labelling (breadth-first), for one (H, W) map."""
    h, w = probs.shape
    fg = probs >= threshold
    seen = np.zeros_like(fg)
    out = []
    for sy, sx in zip(*np.nonzero(fg), strict=True):
        if seen[sy, sx]:
            continue
        seen[sy, sx] = True
        todo, pixels = deque([(sy, sx)]), []
        while todo:
            y, x = todo.popleft()
            pixels.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and fg[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        todo.append((ny, nx))
        ys = np.array([p[0] for p in pixels], dtype=np.float64)
        xs = np.array([p[1] for p in pixels], dtype=np.float64)
        out.append(
            {
                "x": xs.mean(),
                "y": ys.mean(),
                "probability": float(probs[ys.astype(int), xs.astype(int)].max()),
                "area": len(pixels),
            }
        )
    return out


def key(c: dict[str, float]) -> tuple[float, float]:
    return (round(c["y"], 6), round(c["x"], 6))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_candidates_are_the_components_froc_scores(threshold: float) -> None:
    probs = blobby_probs(4, 40, seed=11)
    found = find_candidates(probs, threshold)
    assert len(found) == 4
    assert sum(len(c) for c in found) > 8  # the maps do have several blobs each
    # Components as their own ground truth: froc.detections then scores every candidate
    # as one lesion (its max probability) and finds no false positive.
    lesion_scores, fp_scores = detections(probs, (probs >= threshold).float(), threshold)
    served = sorted(c["probability"] for cands in found for c in cands)
    assert served == pytest.approx(sorted(lesion_scores.tolist()), abs=0)
    assert len(fp_scores) == 0
    for i, cands in enumerate(found):
        want = sorted(flood_fill(probs[i].numpy(), threshold), key=key)
        got = sorted(cands, key=key)
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert a["area"] == b["area"]
            assert a["x"] == pytest.approx(b["x"]) and a["y"] == pytest.approx(b["y"])
            assert a["probability"] == pytest.approx(b["probability"], abs=0)
        assert [c["probability"] for c in cands] == sorted(
            (c["probability"] for c in cands), reverse=True
        )


def test_false_positives_are_the_candidates_off_every_lesion() -> None:
    # The generator's own images and masks, with the masks' blobs as the probability map
    # plus one blob far from any lesion: that one is froc's only false positive.
    _, masks = make_split(3, 32, seed=4, split=1)
    probs = masks[:, 0] * 0.9
    probs[0, 0:2, 0:2] = 0.7
    assert masks[0, 0, 0:3, 0:3].sum() == 0  # not touching a lesion (8-connected)
    found = find_candidates(probs, 0.5)
    lesion_scores, fp_scores = detections(probs, masks)
    assert fp_scores.tolist() == pytest.approx([0.7])
    off = [c for c in found[0] if c["probability"] == pytest.approx(0.7)]
    assert off == [{"x": 0.5, "y": 0.5, "probability": pytest.approx(0.7), "area": 4}]
    # The other candidates are the lesions (froc labels touching lesions as one, too).
    on = [c for cands in found for c in cands if c["probability"] == pytest.approx(0.9)]
    assert len(on) + 1 == sum(len(cands) for cands in found)
    assert len(on) == len(lesion_scores) >= 3
    assert lesion_scores.tolist() == pytest.approx([0.9] * len(on))


def test_an_empty_map_has_no_candidates() -> None:
    assert find_candidates(torch.zeros(2, 8, 8), 0.5) == [[], []]
    assert find_candidates(torch.ones(1, 4, 4), 0.5) == [
        [{"x": 1.5, "y": 1.5, "probability": 1.0, "area": 16}]
    ]


def test_the_unet_takes_multiples_of_the_stride_and_nothing_else() -> None:
    # Pins images.UNET_STRIDE to the model: a change in the UNet's depth fails here.
    model = UNet(1, 2).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 3 * UNET_STRIDE, UNET_STRIDE)).shape[-2:] == (12, 4)
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 1, 3 * UNET_STRIDE + UNET_STRIDE // 2, UNET_STRIDE))
