import itertools

import numpy as np
import pytest

from invrender.core.metrics import curve_dtw, dtw_distance, end_distance, matched_dtw, resample_curve


def _line(n=100, start=(10.0, 20.0), end=(109.0, 20.0)):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.asarray(start) + t * (np.asarray(end) - np.asarray(start))


def _arc(n=30, radius=25.0, centre=(60.0, 60.0), span=(0.2, 2.5)):
    phi = np.linspace(*span, n)
    return np.asarray(centre) + radius * np.stack([np.cos(phi), np.sin(phi)], axis=1)


def _brute_force_dtw(a, b):
    """Enumerate every monotone path of steps (1,0), (0,1), (1,1) from (0,0) to (n-1,m-1)."""
    n, m = len(a), len(b)
    cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
    best = np.inf
    steps = [(1, 0), (0, 1), (1, 1)]

    def walk(i, j, total):
        nonlocal best
        total += cost[i, j]
        if (i, j) == (n - 1, m - 1):
            best = min(best, total)
            return
        for di, dj in steps:
            if i + di < n and j + dj < m:
                walk(i + di, j + dj, total)

    walk(0, 0, 0.0)
    return best / n


def test_identical_curves_score_zero():
    curve = _arc()
    assert dtw_distance(curve, curve) == 0.0
    assert curve_dtw(curve, curve) == pytest.approx(0.0, abs=1e-9)


def test_shifted_line_scores_the_shift():
    line = _line()
    assert dtw_distance(line, line + [0.0, 3.0]) == pytest.approx(3.0, abs=1e-12)
    assert curve_dtw(line, line + [0.0, 3.0]) == pytest.approx(3.0, abs=1e-9)


def test_reversed_curve_scores_zero_through_orientation():
    curve = _arc()
    assert dtw_distance(resample_curve(curve), resample_curve(curve[::-1])) > 10.0
    assert curve_dtw(curve, curve[::-1]) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_dtw_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 6, size=2)
    a, b = rng.normal(size=(n, 2)) * 5, rng.normal(size=(m, 2)) * 5
    assert dtw_distance(a, b) == pytest.approx(_brute_force_dtw(a, b), rel=1e-12)


def test_end_distance_is_the_farther_end_in_the_better_orientation():
    line = _line()
    short = line[:-10]  # the tail stops 10 px short
    shortfall = float(np.linalg.norm(line[-1] - short[-1]))
    assert end_distance(line, short) == pytest.approx(shortfall)
    assert end_distance(line, short[::-1]) == pytest.approx(shortfall)  # either orientation
    assert end_distance(line, line + [0.0, 2.0]) == pytest.approx(2.0)
    # DTW averages the shortfall along the body (under a pixel here); the end keeps it whole.
    assert shortfall == pytest.approx(10.0)
    assert curve_dtw(line, short) < 1.0


@pytest.mark.parametrize("seed", range(4))
def test_end_distance_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(5, 2)) * 5, rng.normal(size=(7, 2)) * 5
    pairings = [((a[0], b[0]), (a[-1], b[-1])), ((a[0], b[-1]), (a[-1], b[0]))]
    brute = min(max(float(np.hypot(*(p - q))) for p, q in pairing) for pairing in pairings)
    assert end_distance(a, b) == pytest.approx(brute, rel=1e-12)


def test_resample_straight_line_is_equally_spaced():
    coarse = np.array([[0.0, 0.0], [1.0, 2.0], [1.0, 2.0], [5.0, 10.0], [6.0, 12.0]])
    out = resample_curve(coarse, 50)
    assert out.shape == (50, 2)
    np.testing.assert_allclose(out[[0, -1]], coarse[[0, -1]], atol=1e-9)
    step = np.linalg.norm(np.diff(out, axis=0), axis=1)
    np.testing.assert_allclose(step, np.hypot(6, 12) / 49, rtol=1e-6)


def test_resample_curve_keeps_points_on_the_curve():
    out = resample_curve(_arc(n=12), 100)
    np.testing.assert_allclose(np.linalg.norm(out - [60.0, 60.0], axis=1), 25.0, atol=0.05)
    step = np.linalg.norm(np.diff(out, axis=0), axis=1)
    assert step.std() / step.mean() < 1e-3


def test_resample_short_inputs():
    two = resample_curve(np.array([[0.0, 0.0], [3.0, 4.0]]), 6)
    np.testing.assert_allclose(np.linalg.norm(np.diff(two, axis=0), axis=1), 1.0)
    three = resample_curve(np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]]), 20)
    assert three.shape == (20, 2) and np.all(np.isfinite(three))
    np.testing.assert_allclose(resample_curve(np.array([[2.0, 3.0]] * 3), 4), [[2.0, 3.0]] * 4)


def test_matched_dtw_is_independent_of_result_order():
    labels = [_arc(), _line(), _arc(centre=(30.0, 90.0), radius=15.0)]
    rng = np.random.default_rng(0)
    results = [c + rng.normal(scale=0.5, size=c.shape) for c in labels]
    mean, per_label = matched_dtw(labels, results)
    for perm in itertools.permutations(range(3)):
        mean_p, per_label_p = matched_dtw(labels, [results[i] for i in perm])
        assert mean_p == pytest.approx(mean, rel=1e-12)
        np.testing.assert_allclose(per_label_p, per_label, rtol=1e-12)
    assert mean == pytest.approx(np.mean(per_label))
    assert per_label == pytest.approx([curve_dtw(a, b) for a, b in zip(labels, results)])


def test_matched_dtw_unmatched_label_gets_nearest_result():
    labels = [_line(), _line() + [0.0, 4.0]]
    mean, per_label = matched_dtw(labels, [_line() + [0.0, 1.0]])
    assert per_label == pytest.approx([1.0, 3.0], abs=1e-9)
    assert mean == pytest.approx(2.0, abs=1e-9)
