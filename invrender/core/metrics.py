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


def end_distance(label: np.ndarray, result: np.ndarray) -> float:
    """The farther of the two end-point errors (px) between `label (k, 2)` and `result (m, 2)`,
    in the better of the result's two orientations. DTW averages along the body, so a fit whose
    tail stops short of the worm's by several pixels can still score well below a pixel; this is
    that tail's error."""
    label, result = np.asarray(label, dtype=np.float64), np.asarray(result, dtype=np.float64)
    ends, other = result[[0, -1]], result[[-1, 0]]
    same = np.linalg.norm(label[[0, -1]] - ends, axis=1).max()
    flipped = np.linalg.norm(label[[0, -1]] - other, axis=1).max()
    return float(min(same, flipped))


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


# ---------------------------------------------------------------- masks

#: Tolerances (px) of the boundary F-score, averaged as by Cheng et al. (DARNet) and Gur et al.
BOUNDARY_TOLERANCES = (1, 2, 3, 4, 5)


def mask_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """F1, IoU, weighted coverage and boundary F-score of one binary mask against its ground truth.

    - `f1` (Dice) = 2 |P and T| / (|P| + |T|); `iou` = |P and T| / |P or T|; both 1 when both are empty.
    - `wcov`, weighted coverage (Arbelaez et al.; DARNet): over the ground truth's regions R (the
      object and the background), sum |R| / N * max over the predicted regions S of IoU(R, S).
      (ACDRNet's released code computes min(|P|, |T|) / max(|P|, |T|) instead; not used here.)
    - `boundf`: the F-score of boundary pixels (mask pixels with a 4-neighbour outside the mask;
      the image border is not a boundary), a pixel matching when the other mask's boundary lies within
      d px (Euclidean), averaged over d = 1..5 (DAVIS' measure, as in DARNet and ACDRNet).
    """
    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"masks of different shapes {p.shape} and {t.shape}")
    intersection, union = float((p & t).sum()), float((p | t).sum())
    total = float(p.sum() + t.sum())
    f1 = 2 * intersection / total if total else 1.0
    iou = intersection / union if union else 1.0
    return {"f1": f1, "iou": iou, "wcov": weighted_coverage(p, t), "boundf": boundary_f_score(p, t)}


def weighted_coverage(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Weighted coverage of the ground truth's two regions (object, background); see mask_scores."""
    score = 0.0
    for region in (truth, ~truth):
        if region.any():
            best = max(float((region & s).sum()) / float((region | s).sum()) for s in (predicted, ~predicted))
            score += region.sum() / region.size * best
    return float(score)


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it (the image border counts as inside)."""
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, border_value=1)


def boundary_f_score(
    predicted: np.ndarray, truth: np.ndarray, tolerances: tuple[int, ...] = BOUNDARY_TOLERANCES
) -> float:
    """Mean over `tolerances` (px) of the boundary F-score; see mask_scores."""
    from scipy.ndimage import distance_transform_edt

    bp, bt = mask_boundary(predicted), mask_boundary(truth)
    if not bp.any() or not bt.any():
        return 1.0 if bp.any() == bt.any() else 0.0
    to_truth = distance_transform_edt(~bt)[bp]  # each predicted boundary pixel's distance to the truth's
    to_predicted = distance_transform_edt(~bp)[bt]
    scores = []
    for d in tolerances:
        precision, recall = float((to_truth <= d).mean()), float((to_predicted <= d).mean())
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(scores))


# ---------------------------------------------------------------- Cell Tracking Challenge SEG


def _as_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """A label image as int64; ValueError for values that are not whole numbers."""
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(f"{name} labels must be whole numbers")
    return labels.astype(np.int64, copy=False)


def seg_jaccards(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The Cell Tracking Challenge's SEG score of every reference object of one frame.

    `result` and `reference` are label images of one shape (2D `(H, W)` or 3D); label 0 (or less) is
    the background, every positive label an object. A reference object R is matched by the result
    object S with |R and S| > 0.5 |R| (strictly more than half of R, so at most one S qualifies) and
    scores the Jaccard index |R and S| / |R or S|; unmatched, it scores 0. Result objects that match
    nothing are not penalised (the CTC's ground truth may annotate only some cells).

    Returns float64 `(n_reference_objects,)`, ordered by reference label.
    """
    result, reference = _as_labels(result, "result"), _as_labels(reference, "reference")
    if result.shape != reference.shape:
        raise ValueError(f"label images of different shapes {result.shape} (result) and {reference.shape} (reference)")
    ref, res = reference.ravel(), result.ravel()
    ref_labels, ref_index = np.unique(ref[ref > 0], return_inverse=True)
    if len(ref_labels) == 0:
        return np.zeros(0)
    ref_sizes = np.bincount(ref_index, minlength=len(ref_labels))
    res_labels, res_index = np.unique(res[res > 0], return_inverse=True)
    res_sizes = np.bincount(res_index, minlength=len(res_labels))
    # Overlaps of every (reference, result) pair that meets: one int64 key per overlapping pixel,
    # counted by np.unique (a dense bincount of n_ref * n_res cells could be far too large).
    both = (ref > 0) & (res > 0)
    pair_ref = np.searchsorted(ref_labels, ref[both])
    pair_res = np.searchsorted(res_labels, res[both])
    keys, overlaps = np.unique(pair_ref * len(res_labels) + pair_res, return_counts=True)
    pair_ref, pair_res = keys // len(res_labels), keys % len(res_labels)
    # 2 |R and S| > |R| in integers: the strict half-rule without rounding.
    match = 2 * overlaps > ref_sizes[pair_ref]
    pair_ref, pair_res, overlaps = pair_ref[match], pair_res[match], overlaps[match]
    jaccards = np.zeros(len(ref_labels))
    jaccards[pair_ref] = overlaps / (ref_sizes[pair_ref] + res_sizes[pair_res] - overlaps)
    return jaccards


def seg_measure(results: dict[int, np.ndarray], references: dict[int, np.ndarray]) -> dict:
    """The CTC SEG measure over frames: the mean of `seg_jaccards` pooled over every reference object
    of every reference frame (not a mean of per-frame means).

    `results` and `references` map frame numbers to label images; frames of `results` without a
    reference are ignored. Returns `{"seg", "objects", "matched", "frames", "per_frame"}`: "seg" is
    NaN when there is no reference object; "per_frame" is a list of `{"frame", "objects",
    "matched", "seg"}` in frame order. ValueError if a reference frame has no result.
    """
    missing = sorted(set(references) - set(results))
    if missing:
        raise ValueError(f"no result for reference frame(s) {', '.join(map(str, missing))}")
    pooled, per_frame = [], []
    for frame in sorted(references):
        jaccards = seg_jaccards(results[frame], references[frame])
        pooled.append(jaccards)
        per_frame.append(
            {
                "frame": int(frame),
                "objects": len(jaccards),
                "matched": int(np.count_nonzero(jaccards)),
                "seg": float(jaccards.mean()) if len(jaccards) else float("nan"),
            }
        )
    everything = np.concatenate(pooled) if pooled else np.zeros(0)
    # A match overlaps its reference, so its Jaccard is > 0: nonzero scores count the matches.
    return {
        "seg": float(everything.mean()) if len(everything) else float("nan"),
        "objects": len(everything),
        "matched": int(np.count_nonzero(everything)),
        "frames": len(per_frame),
        "per_frame": per_frame,
    }


def dice_per_label(result: np.ndarray, reference: np.ndarray, labels: list[int]) -> dict[int, float]:
    """Dice 2|A and B| / (|A| + |B|) of each label in two label volumes of one grid (the VerSe
    evaluation's definition); a label absent from both counts 1, from one only 0."""
    scores = {}
    for label in labels:
        a, b = result == label, reference == label
        total = int(a.sum()) + int(b.sum())
        scores[int(label)] = 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total
    return scores
