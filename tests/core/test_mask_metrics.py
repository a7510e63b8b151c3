"""Mask metrics (F1, IoU, weighted coverage, boundary F-score) on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from invrender.core.metrics import boundary_f_score, mask_boundary, mask_scores, weighted_coverage


def square(top: int, left: int, side: int, shape=(10, 12)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_identical_masks_score_one():
    mask = square(2, 2, 5)
    assert mask_scores(mask, mask) == {"f1": 1.0, "iou": 1.0, "wcov": 1.0, "boundf": 1.0}


def test_a_square_shifted_by_two_columns():
    truth, predicted = square(2, 2, 5), square(2, 4, 5)  # overlap: 5 rows x 3 columns
    scores = mask_scores(predicted, truth)
    assert scores["f1"] == pytest.approx(2 * 15 / 50)
    assert scores["iou"] == pytest.approx(15 / 35)
    # Object: best IoU 15/35; background (95 px): its IoU with the predicted background is 85/105.
    assert scores["wcov"] == pytest.approx(25 / 120 * 15 / 35 + 95 / 120 * 85 / 105)
    # 16 boundary pixels each; 10 of them within 1 px of the other boundary, all within 2 px.
    assert scores["boundf"] == pytest.approx((10 / 16 + 4) / 5)


def test_disjoint_and_empty_masks():
    truth = square(1, 1, 3)
    assert mask_scores(square(6, 8, 3), truth)["f1"] == 0.0
    assert mask_scores(square(6, 8, 3), truth)["iou"] == 0.0
    empty = np.zeros_like(truth)
    assert mask_scores(empty, truth) == {
        "f1": 0.0,
        "iou": 0.0,
        "wcov": pytest.approx(9 / 120 * 9 / 120 + 111 / 120 * 111 / 120),
        "boundf": 0.0,
    }
    assert mask_scores(empty, empty) == {"f1": 1.0, "iou": 1.0, "wcov": 1.0, "boundf": 1.0}


def test_weighted_coverage_takes_the_best_matching_predicted_region():
    truth = square(2, 2, 5)
    # The complement of the truth: each truth region is best covered by the other predicted region.
    assert weighted_coverage(~truth, truth) == pytest.approx(1.0)


def test_boundary_is_the_inner_ring_and_ignores_the_image_border():
    ring = mask_boundary(square(2, 2, 5))
    assert ring.sum() == 16 and not ring[4, 4] and ring[2, 2]
    assert not mask_boundary(np.ones((6, 6), dtype=bool)).any()
    half = np.zeros((6, 6), dtype=bool)
    half[:, :3] = True
    assert mask_boundary(half).sum() == 6  # only the column next to the background


def test_boundary_f_score_at_larger_tolerances_forgives_more():
    truth, predicted = square(2, 2, 5), square(2, 4, 5)
    assert boundary_f_score(predicted, truth, (1,)) == pytest.approx(10 / 16)
    assert boundary_f_score(predicted, truth, (2,)) == 1.0
    assert boundary_f_score(predicted, truth, (1, 2)) == pytest.approx((10 / 16 + 1) / 2)


def test_masks_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="different shapes"):
        mask_scores(np.zeros((3, 3), bool), np.zeros((3, 4), bool))
