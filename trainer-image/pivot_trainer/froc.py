"""FROC for lesion detection from segmentation outputs.

A lesion is a connected component of the ground-truth mask; a candidate is a connected
component of the prediction thresholded at `base_threshold`, scored by its maximum
probability. A candidate that overlaps a lesion detects it; one that overlaps none is a false
positive; a candidate that overlaps several lesions detects only the one it overlaps most
(otherwise one huge low-threshold blob would "detect" every lesion in its image). Sweeping a
threshold over the candidate scores (as LUNA16 and CAMELYON16 do) gives sensitivity against
false positives per image; FROC is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8
false positives per image.

Components use 8-connectivity and are labelled in torch (no scipy), batched, on the model's
device. An epoch aggregates exactly: it only needs each lesion's best score and the scores of
the false positives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
BASE_THRESHOLD = 0.5  # the pixel metrics' threshold (logit > 0)
MISSED = -1.0  # best score of a lesion that no candidate overlaps (scores are >= 0)


def label_components(mask: torch.Tensor) -> torch.Tensor:
    """8-connected components of a binary (N, H, W) or (N, 1, H, W) mask.

    Returns int64 labels of shape (N, H, W): 0 for background, and for each component one id
    that is unique across the whole batch (not consecutive). Each foreground pixel points at
    a pixel of its component (itself at first); every round it takes the largest pointer in
    its 3x3 neighbourhood, then follows pointers twice (pointer jumping, so long components
    converge in far fewer rounds than their length).
    """
    fg = mask.reshape(mask.shape[0], mask.shape[-2], mask.shape[-1]).bool()
    n, h, w = fg.shape
    flat_fg = fg.flatten()
    # max_pool2d needs floats: float32 holds every index below 2**24 exactly.
    dtype = torch.float32 if n * h * w < 2**24 else torch.float64
    ptr = torch.arange(n * h * w, device=fg.device)
    ptr = torch.where(flat_fg, ptr, torch.full_like(ptr, -1))
    while True:
        pooled = F.max_pool2d(ptr.reshape(n, 1, h, w).to(dtype), 3, stride=1, padding=1)
        new = torch.where(flat_fg, pooled.flatten().long(), ptr)
        for _ in range(2):
            new = torch.where(flat_fg, new[new.clamp(min=0)], new)
        # A fixpoint has every pixel >= its neighbours: one value per component.
        if torch.equal(new, ptr):
            return torch.where(flat_fg, ptr + 1, 0).reshape(n, h, w)
        ptr = new


def detections(
    probs: torch.Tensor, targets: torch.Tensor, base_threshold: float = BASE_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """(best score of each lesion, or MISSED; scores of false-positive candidates) for a batch
    of probability maps and binary masks of the same shape."""
    probs = probs.detach().float().reshape(probs.shape[0], probs.shape[-2], probs.shape[-1])
    pred = label_components(probs >= base_threshold).flatten()
    gt = label_components(targets > 0.5).flatten()
    p = probs.flatten()
    size = p.numel() + 1
    # Candidate scores: max probability over each predicted component.
    score = torch.zeros(size, dtype=p.dtype, device=p.device)
    score.scatter_reduce_(0, pred, p, reduce="amax", include_self=False)
    # A candidate detects one lesion, the one it overlaps most (ties: the larger id), so one
    # sprawling component cannot claim every lesion in an image.
    both = (pred > 0) & (gt > 0)
    pairs, overlap = torch.unique(pred[both] * size + gt[both], return_counts=True)
    pair_pred = pairs // size
    choice = torch.zeros(size, dtype=torch.long, device=p.device)
    choice.scatter_reduce_(0, pair_pred, overlap * size + pairs % size, reduce="amax")
    hits = torch.unique(pair_pred)
    best = torch.full((size,), MISSED, dtype=p.dtype, device=p.device)
    best.scatter_reduce_(0, choice[hits] % size, score[hits], reduce="amax", include_self=True)
    lesions = torch.unique(gt[gt > 0])
    candidates = torch.unique(pred[pred > 0])
    hit = torch.zeros(size, dtype=torch.bool, device=p.device)
    hit[hits] = True
    false_pos = candidates[~hit[candidates]]
    return best[lesions].cpu().numpy(), score[false_pos].cpu().numpy()


def froc_curve(
    lesion_scores: np.ndarray, fp_scores: np.ndarray, num_images: int
) -> list[tuple[float, float]]:
    """(false positives per image allowed, best sensitivity within it) at each FP_RATES rate."""
    if len(lesion_scores) == 0 or num_images == 0:
        return [(rate, float("nan")) for rate in FP_RATES]
    fps = np.sort(np.asarray(fp_scores, dtype=np.float64))[::-1]
    lesions = np.asarray(lesion_scores, dtype=np.float64)
    out = []
    for rate in FP_RATES:
        allowed = int(np.floor(rate * num_images + 1e-9))
        if allowed >= len(fps):
            # Every candidate may be kept: all lesions that any candidate overlaps count.
            sens = float(np.mean(lesions > MISSED))
        else:
            # The threshold must exclude the (allowed+1)-th best false positive; ties with it
            # go too, so a lesion counts only if its score is strictly above it.
            sens = float(np.mean(lesions > fps[allowed]))
        out.append((rate, sens))
    return out


def froc_score(lesion_scores: np.ndarray, fp_scores: np.ndarray, num_images: int) -> float:
    """Mean sensitivity over FP_RATES; NaN when there are no lesions."""
    return float(np.mean([s for _, s in froc_curve(lesion_scores, fp_scores, num_images)]))


@dataclass
class FrocCounts:
    """An epoch's detections, accumulated batch by batch (and across ranks by `merge`)."""

    num_images: int = 0
    lesion_scores: list[float] = field(default_factory=list)
    fp_scores: list[float] = field(default_factory=list)

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        lesions, fps = detections(torch.sigmoid(logits.detach().float()), targets)
        self.num_images += int(targets.shape[0])
        self.lesion_scores.extend(lesions.tolist())
        self.fp_scores.extend(fps.tolist())

    def merge(self, other: FrocCounts) -> None:
        self.num_images += other.num_images
        self.lesion_scores.extend(other.lesion_scores)
        self.fp_scores.extend(other.fp_scores)

    @property
    def froc(self) -> float:
        return froc_score(
            np.asarray(self.lesion_scores), np.asarray(self.fp_scores), self.num_images
        )
