"""FROC on hand-made probability maps and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pivot_trainer.froc import (
    FP_RATES,
    MISSED,
    FrocCounts,
    detections,
    froc_curve,
    froc_score,
    label_components,
)


def grid(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[float(c == "#") for c in row] for row in rows])[None]


def test_components_are_eight_connected_and_unique_across_the_batch() -> None:
    a = grid(
        [
            "##...",
            ".#..#",
            "..#.#",
            ".....",
            "#...#",
        ]
    )
    labels = label_components(torch.cat([a, a]))
    first = labels[0]
    # The diagonal chain is one component; the right bar, and two corners are three more.
    assert first[0, 0] == first[1, 1] == first[2, 2]
    assert first[1, 4] == first[2, 4] != first[0, 0]
    assert len(torch.unique(first[first > 0])) == 4
    assert (labels[0] == 0).equal(a[0] == 0)
    # Same picture in the second image: same shapes, different ids.
    assert not set(labels[0].unique().tolist()) - {0} & set(labels[1].unique().tolist())
    assert len(torch.unique(labels[1][labels[1] > 0])) == 4


def test_a_spiral_component_is_labelled_as_one() -> None:
    spiral = grid(
        [
            "#######",
            "......#",
            "#####.#",
            "#...#.#",
            "#.###.#",
            "#.....#",
            "#######",
        ]
    )
    labels = label_components(spiral)
    assert len(torch.unique(labels[labels > 0])) == 1


def test_detections_score_hits_misses_and_false_positives() -> None:
    target = grid(
        [
            "##......",
            "##......",
            "........",
            "......##",
            "......##",
            "........",
            "...#....",
            "........",
        ]
    )
    probs = torch.zeros(1, 8, 8)
    probs[0, 0, 1] = 0.9  # overlaps lesion A
    probs[0, 1, 2] = 0.7  # same component as the 0.9 pixel (8-connected), also on A's edge
    probs[0, 4, 6] = 0.3  # below the base threshold: lesion B is missed
    probs[0, 7, 0] = 0.8  # nothing there: a false positive
    probs[0, 2, 4] = 0.6  # another false positive
    lesions, fps = detections(probs, target)
    assert sorted(lesions.tolist()) == pytest.approx(sorted([0.9, MISSED, MISSED]))
    assert sorted(fps.tolist()) == pytest.approx([0.6, 0.8])


def test_froc_at_known_operating_points() -> None:
    # 4 images, 4 lesions; false positives scored 0.95, 0.6, 0.4.
    lesions = np.array([0.9, 0.7, 0.5, MISSED])
    fps = np.array([0.95, 0.6, 0.4])
    curve = dict(froc_curve(lesions, fps, 4))
    assert set(curve) == set(FP_RATES)
    # 1/8 and 1/4 FP per image allow 0 or 1 FP over 4 images.
    assert curve[0.125] == pytest.approx(0.0)  # must stay above 0.95: nothing
    assert curve[0.25] == pytest.approx(0.5)  # above 0.6: 0.9 and 0.7
    assert curve[0.5] == pytest.approx(0.75)  # 2 FPs allowed, above 0.4: 0.9, 0.7, 0.5
    for rate in (1.0, 2.0, 4.0, 8.0):
        assert curve[rate] == pytest.approx(0.75)  # the missed lesion is never found
    assert froc_score(lesions, fps, 4) == pytest.approx((0 + 0.5 + 0.75 * 5) / 7)


def test_perfect_detection_scores_one_and_ties_with_a_false_positive_do_not_count() -> None:
    assert froc_score(np.array([0.8, 0.9]), np.array([]), 2) == 1.0
    # A lesion scored exactly like the only false positive cannot be kept without it.
    curve = dict(froc_curve(np.array([0.7]), np.array([0.7]), 4))
    assert curve[0.125] == 0.0 and curve[0.25] == 1.0
    assert np.isnan(froc_score(np.array([]), np.array([0.5]), 1))


def test_epoch_counts_merge_batches_exactly() -> None:
    torch.manual_seed(0)
    targets = (torch.rand(6, 1, 12, 12) > 0.85).float()
    logits = torch.randn(6, 1, 12, 12) * 3
    whole = FrocCounts()
    whole.update(logits, targets)
    parts, other = FrocCounts(), FrocCounts()
    parts.update(logits[:4], targets[:4])
    other.update(logits[4:], targets[4:])
    parts.merge(other)
    assert parts.num_images == whole.num_images == 6
    assert sorted(parts.lesion_scores) == pytest.approx(sorted(whole.lesion_scores))
    assert sorted(parts.fp_scores) == pytest.approx(sorted(whole.fp_scores))
    assert parts.froc == pytest.approx(whole.froc)
    assert 0.0 <= whole.froc <= 1.0


def test_a_candidate_spanning_two_lesions_detects_only_the_one_it_overlaps_most() -> None:
    target = grid(
        [
            "##..#",
            "##..#",
            ".....",
        ]
    )
    probs = torch.zeros(1, 3, 5)
    probs[0, 0, :] = 0.8  # one component across both lesions: 2 pixels on the left, 1 right
    lesions, fps = detections(probs, target)
    assert sorted(lesions.tolist()) == pytest.approx([MISSED, 0.8])
    assert fps.size == 0
