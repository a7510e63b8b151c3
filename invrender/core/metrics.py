"""Shape metrics. Curves are `(k, 2)` arrays of `[x, y]` points in pixels.

Average DTW (Zdyb, Alonso, Kirkegaard, Sec. 3.1): both curves are resampled to `n` points equally
spaced in arc length, then the cheapest monotone matching of their points is found; its summed
Euclidean distance divided by the number of points of the first (label) curve is the score, in pixels.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import linear_sum_assignment

#: Dense samples per output point when measuring the arc length of the interpolating spline.
_OVERSAMPLE = 16
#: Cost-matrix entries computed at once by matched_dtw, bounding its memory (8 bytes each).
_CHUNK_ENTRIES = 2**22


def resample_curve(points: np.ndarray, n: int = 100) -> np.ndarray:
    """Resample a polyline `(k, 2)` to `(n, 2)` points equally spaced in arc length.

    The points are interpolated by a cubic spline in cumulative chord length (a straight segment for
    two points; scipy's not-a-knot condition makes three points a parabola); consecutive duplicate
    points are dropped first. Equal spacing is measured along the spline itself.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"points must have shape (k, 2), got {points.shape}")
    keep = np.r_[True, np.any(np.diff(points, axis=0) != 0, axis=1)]
    points = points[keep]
    if len(points) == 1:
        return np.repeat(points, n, axis=0)
    chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    if len(points) == 2:
        return points[0] + np.linspace(0.0, 1.0, n)[:, None] * (points[1] - points[0])
    spline = CubicSpline(chord, points, axis=0)
    t = np.linspace(0.0, chord[-1], _OVERSAMPLE * max(n, len(points)))
    dense = spline(t)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
    # Invert arc length -> parameter on the dense table; the error is second order in the step.
    t_equal = np.interp(np.linspace(0.0, arc[-1], n), arc, t)
    return spline(t_equal)


def _dtw_batch(cost: np.ndarray) -> np.ndarray:
    """Minimum summed cost of a monotone warping path through `cost (..., n, m)`; returns `(...)`.

    Cells on one anti-diagonal depend only on the two previous anti-diagonals, so each of the
    n + m - 1 steps is vectorised over the diagonal and the batch.
    """
    *batch, n, m = cost.shape
    acc = np.full((*batch, n + 1, m + 1), np.inf)
    acc[..., 0, 0] = 0.0
    for d in range(n + m - 1):
        i = np.arange(max(0, d - m + 1), min(d, n - 1) + 1)
        j = d - i
        best = np.minimum(np.minimum(acc[..., i, j + 1], acc[..., i + 1, j]), acc[..., i, j])
        acc[..., i + 1, j + 1] = cost[..., i, j] + best
    return acc[..., n, m]


def _pair_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the points of `a (..., n, 2)` and `b (..., m, 2)`: `(..., n, m)`."""
    return np.linalg.norm(a[..., :, None, :] - b[..., None, :, :], axis=-1)


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Average DTW between curves `a (n, 2)` and `b (m, 2)`: the cheapest warping path's summed
    point distances divided by `n`, in pixels. Not symmetric: `a` is the reference (label)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(_dtw_batch(_pair_cost(a, b)) / len(a))


def _oriented_dtw(labels: np.ndarray, results: np.ndarray) -> np.ndarray:
    """`labels (L, n, 2)`, `results (R, n, 2)` -> `(L, R)` DTW, the better of both result orientations."""
    both = np.stack([results, results[:, ::-1]])  # (2, R, n, 2)
    cost = _pair_cost(labels[None, :, None], both[:, None])  # (2, L, R, n, n)
    return _dtw_batch(cost).min(axis=0) / labels.shape[1]


def curve_dtw(label: np.ndarray, result: np.ndarray, n: int = 100) -> float:
    """Average DTW in pixels between `label (k, 2)` and `result (m, 2)`, both resampled to `n`
    points; the result is compared in both orientations and the better one counts."""
    a = resample_curve(label, n)[None]
    b = resample_curve(result, n)[None]
    return float(_oriented_dtw(a, b)[0, 0])


def matched_dtw(labels: list[np.ndarray], results: list[np.ndarray], n: int = 100) -> tuple[float, list[float]]:
    """Match labels to results one-to-one (Hungarian on the curve_dtw matrix) and score them.

    Returns `(mean, per_label)`: `per_label[i]` is the DTW of label `i` to its matched result, in
    label order, and `mean` their mean. With fewer results than labels, a label left unmatched gets
    the DTW to its nearest result (so missing results still cost); extra results are ignored.
    Raises ValueError when there are labels but no results.
    """
    if not labels:
        return float("nan"), []
    if not results:
        raise ValueError("no results to match the labels with")
    a = np.stack([resample_curve(p, n) for p in labels])
    b = np.stack([resample_curve(p, n) for p in results])
    rows_per_chunk = max(1, _CHUNK_ENTRIES // (2 * len(b) * n * n))
    matrix = np.concatenate([_oriented_dtw(a[i : i + rows_per_chunk], b) for i in range(0, len(a), rows_per_chunk)])
    per_label = matrix.min(axis=1)
    rows, cols = linear_sum_assignment(matrix)
    per_label[rows] = matrix[rows, cols]
    return float(per_label.mean()), [float(v) for v in per_label]


def surface_samples(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) points uniformly distributed over a triangle mesh's surface (area-weighted)."""
    rng = np.random.default_rng(seed)
    corners = np.asarray(vertices)[np.asarray(faces)]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    chosen = rng.choice(len(faces), size=count, p=areas / areas.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)  # uniform in the triangle: barycentric (1 - s, s (1 - r2), s r2)
    c = corners[chosen]
    return (1 - s)[:, None] * c[:, 0] + (s * (1 - r2))[:, None] * c[:, 1] + (s * r2)[:, None] * c[:, 2]


def chamfer_distance(points_a: np.ndarray, points_b: np.ndarray) -> tuple[float, float, float]:
    """Symmetric Chamfer distance: the mean of the two mean nearest-neighbour distances, and each
    direction (a to b, b to a), in the points' units."""
    from scipy.spatial import cKDTree

    a_to_b = float(cKDTree(points_b).query(points_a)[0].mean())
    b_to_a = float(cKDTree(points_a).query(points_b)[0].mean())
    return (a_to_b + b_to_a) / 2, a_to_b, b_to_a
