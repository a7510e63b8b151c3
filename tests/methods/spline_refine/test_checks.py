"""The checks that flag a refined spline as probably wrong (methods/spline_refine/checks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from invrender.core.metrics import curve_dtw, resample_curve
from invrender.methods.spline_refine.checks import (
    is_suspect,
    loss_ratio,
    posture_change,
    shared_fraction,
    start_spread,
    unexplained_fractions,
)


def _wave(n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 60.0, n)
    return np.stack([t, 8 * np.sin(t / 10)], axis=1)


def _brute_force_posture_change(a: np.ndarray, b: np.ndarray, n: int = 50) -> float:
    """The same distance with the rotation found by trying 36000 angles."""
    a, b = resample_curve(a, n), resample_curve(b, n)
    a, b = a - a.mean(0), b - b.mean(0)
    a, b = a / np.sqrt((a**2).sum(1).mean()), b / np.sqrt((b**2).sum(1).mean())
    best = np.inf
    for angle in np.linspace(0, 2 * np.pi, 36000, endpoint=False):
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        best = min(best, float(np.sqrt(((a @ rot.T - b) ** 2).sum(1).mean())))
    return best


def test_posture_change_ignores_position_heading_and_size():
    curve = _wave()
    angle = 1.1
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert posture_change(curve, 0.7 * curve @ rot.T + [30.0, -12.0]) < 1e-9


@pytest.mark.parametrize("other", ["mirrored", "straight", "coiled"])
def test_posture_change_matches_a_brute_force_rotation_search(other):
    curve = _wave()
    t = np.linspace(0.0, 1.0, 40)
    shapes = {
        "mirrored": curve * [1.0, -1.0],
        "straight": np.stack([60 * t, 0 * t], axis=1),
        "coiled": np.stack([10 * np.cos(4 * np.pi * t) + 5 * t, 10 * np.sin(4 * np.pi * t)], axis=1),
    }
    value = posture_change(curve, shapes[other])
    assert value > 0.1
    assert value == pytest.approx(_brute_force_posture_change(curve, shapes[other]), abs=1e-3)


def test_shared_fraction_of_a_crossing_and_of_a_merge():
    t = np.linspace(0.0, 100.0, 101)
    horizontal = np.stack([t, 50 + 0 * t], axis=1)
    vertical = np.stack([50 + 0 * t, t], axis=1)
    widths = np.full(101, 8.0)  # a quarter: 2 px either side
    crossing = shared_fraction(horizontal, widths, [vertical])
    assert 0.03 <= crossing <= 0.06  # the 5 points within 2 px of x = 50
    merged = horizontal[:51] + [0.0, 1.0]  # a spline 1 px beside its first half
    assert shared_fraction(horizontal, widths, [merged]) == pytest.approx(52 / 101)  # x = 0 to 51 (sqrt 3 past 50)
    assert shared_fraction(horizontal, widths, []) == 0.0


def test_unexplained_fraction_counts_dark_residual_near_each_init():
    rng = np.random.default_rng(0)
    noise = 0.01**2
    residual = rng.normal(0.0, 0.01, (100, 100))
    residual[40:46, 10:70] -= 0.2  # a dark body of 6 x 60 px that no spline explains
    t = np.linspace(0.0, 1.0, 12)
    near = np.stack([10 + 60 * t, 43 + 0 * t], axis=1)  # an init on it
    far = np.stack([10 + 60 * t, 90 + 0 * t], axis=1)
    fitted = [{"points": near, "widths": np.full(12, 6.0)}, {"points": far, "widths": np.full(12, 6.0)}]
    fractions = unexplained_fractions([near, far], fitted, residual, polarity=-1.0, noise=noise, reach=25.0)
    assert fractions[0] == pytest.approx(1.0, abs=0.05)  # its whole area
    assert fractions[1] == 0.0  # noise alone: no 3x3 blob beyond 3 sigma
    bright = unexplained_fractions([near, far], fitted, residual, polarity=1.0, noise=noise, reach=25.0)
    assert bright == [0.0, 0.0]  # a dark residual is not a missing bright body


def test_loss_ratio_and_suspect():
    assert loss_ratio(0.02, 0.002) == pytest.approx(10.0)
    assert loss_ratio(None, 0.002) is None
    thresholds = {"loss_ratio": 8.0, "shared": 0.3, "unexplained": 0.2, "posture_change": 0.25}
    calm = {"loss_ratio": 3.0, "shared": 0.05, "unexplained": 0.0, "posture_change": 0.1}
    assert not is_suspect(calm, thresholds)
    for name, value in [("loss_ratio", 9.0), ("shared", 0.5), ("unexplained", 0.3), ("posture_change", 0.4)]:
        assert is_suspect({**calm, name: value}, thresholds), name
    assert not is_suspect({**calm, "loss_ratio": None}, thresholds)


def test_start_spread_is_the_farthest_other_start():
    kept = _wave()
    assert start_spread(kept, []) == 0.0
    near, far = kept + [0.0, 0.5], kept + [3.0, 4.0]
    assert start_spread(kept, [near]) == pytest.approx(curve_dtw(kept, near))
    assert curve_dtw(kept, far) > 3 * curve_dtw(kept, near)
    assert start_spread(kept, [near, far, near]) == pytest.approx(curve_dtw(kept, far))


def test_a_check_without_a_threshold_is_not_used():
    thresholds = {"loss_ratio": 8.0, "shared": 0.3, "unexplained": 0.2, "posture_change": 0.25, "start_spread": None}
    checks = {"loss_ratio": 3.0, "shared": 0.05, "unexplained": 0.0, "posture_change": 0.1, "start_spread": 9.0}
    assert not is_suspect(checks, thresholds)
    assert is_suspect(checks, {**thresholds, "start_spread": 2.0})
