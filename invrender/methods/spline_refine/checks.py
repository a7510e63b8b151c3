"""Is a refined spline probably wrong? Four checks of a fit that need no ground truth.

- `loss_ratio`: the spline's own loss (the mean squared residual where its rendering is) over the
  frame's noise (the mean squared residual where no body is rendered). A spline on the right body
  leaves little more than the noise; one that left its body renders where the image has none, and
  its body's darkness goes unexplained beside it.
- `shared`: the fraction of the spline lying on another spline (its centre within a quarter of its
  width of the other's centreline). Worms cross each other at an angle, sharing a short piece of
  their length; two splines that end up on one worm (a merge, or a swap of their parts) share much
  of it.
- `unexplained`: the area of dark pixels that no fitted spline explains (residual beyond
  NOISE_SIGMAS noise deviations) nearest to the spline's init, the detector's guess at its body,
  as a fraction of the spline's own area. A spline that slid off onto a neighbour, or took a short
  cut across a coil, leaves part of its body unexplained near its init.

- `posture_change`: how much the fit changed the init's posture (its shape, whatever its position,
  heading and size; see posture_change). A detector may misplace a worm, but it rarely invents its
  posture: a fit that swapped parts with a crossing worm, or cut across a coil, took another shape.

- `start_spread`: how far (DTW, px) the other starts of the fit's multi-start phase that explain the
  image about as well as the kept one (within `output.start_tolerance` of its loss) put the spline.
  Where the pixels do not decide which worm is where (two worms lying along each other, a knot of
  three), equally good starts disagree; where they do, good starts agree.

`suspect` combines them with the thresholds of the config's `flag` section. Points are `[x, y]`
px; images `(H, W)` on the fit's normalised intensities.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_opening
from scipy.spatial import cKDTree

from invrender.core.metrics import curve_dtw, resample_curve
from invrender.methods.spline_refine.groups import densify, nearest_group

#: A pixel's residual is unexplained body beyond this many noise deviations.
NOISE_SIGMAS = 3.0


def loss_ratio(own_loss: float | None, noise: float) -> float | None:
    """The own loss over the noise's mean squared residual (None without an own loss)."""
    if own_loss is None or not np.isfinite(own_loss):
        return None
    return float(own_loss / max(noise, 1e-12))


def shared_fraction(points: np.ndarray, widths: np.ndarray | None, others: list[np.ndarray]) -> float:
    """The fraction of `points (P, 2)` within a quarter of the local full width `widths (P,)` px
    (2 px without widths) of the polylines `others`."""
    if not others:
        return 0.0
    tree = cKDTree(np.concatenate([densify(o, 0.5) for o in others]))
    distance, _ = tree.query(points)
    reach = 0.25 * (np.asarray(widths) if widths is not None else np.full(len(points), 8.0))
    return float(np.mean(distance <= reach))


def unexplained_fractions(
    inits: list[np.ndarray], fitted: list[dict], residual: np.ndarray, polarity: float, noise: float, reach: float
) -> list[float]:
    """For each spline, the area of unexplained body near its init, as a fraction of its own area.

    Unexplained body: pixels where `residual (H, W)` (image - render) is darkness (or brightness,
    with `polarity`) beyond NOISE_SIGMAS noise deviations, in blobs of at least a 3x3 square. Each
    such pixel within `reach` px of an init polyline (`inits`, (K, 2) each) counts for the nearest
    one; a spline's own area is its length times its mean width (`fitted` records' points, widths).
    """
    body = binary_opening(polarity * residual > NOISE_SIGMAS * np.sqrt(max(noise, 1e-12)), np.ones((3, 3), bool))
    nearest, distance = nearest_group(inits, [[i] for i in range(len(inits))], residual.shape)
    counted = body & (distance <= reach)
    areas = np.bincount(nearest[counted], minlength=len(inits))
    fractions = []
    for area, rec in zip(areas, fitted):
        length = float(np.linalg.norm(np.diff(rec["points"], axis=0), axis=1).sum())
        width = float(np.mean(rec["widths"])) if rec.get("widths") is not None else 1.0
        fractions.append(float(area / max(length * width, 1.0)))
    return fractions


def posture_change(init_points: np.ndarray, points: np.ndarray, n: int = 50) -> float:
    """How far the fitted spline's posture is from its init's, whatever their position, heading
    and size: the RMS distance between the two polylines (resampled to `n` points uniform in arc
    length, head to head) after each is centred and scaled to unit RMS radius and the init rotated
    onto the fit (2D Procrustes). 0 for the same shape; about 1 for unrelated shapes."""
    a = resample_curve(np.asarray(init_points, dtype=np.float64), n)
    b = resample_curve(np.asarray(points, dtype=np.float64), n)
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    a /= max(float(np.sqrt((a**2).sum(axis=1).mean())), 1e-12)
    b /= max(float(np.sqrt((b**2).sum(axis=1).mean())), 1e-12)
    # The best rotation of a onto b: the angle of sum(conj(a) * b) with points as complex numbers.
    za, zb = a[:, 0] + 1j * a[:, 1], b[:, 0] + 1j * b[:, 1]
    cross = np.sum(np.conj(za) * zb)
    rotated = za * (cross / abs(cross)) if abs(cross) > 0 else za
    return float(np.sqrt(np.mean(np.abs(rotated - zb) ** 2)))


def start_spread(kept: np.ndarray, others: list[np.ndarray]) -> float:
    """The largest DTW (px) between the centreline `kept (P, 2)` and those of `others` (0 without)."""
    return max((curve_dtw(kept, other) for other in others), default=0.0)


#: The checks of a record, each compared with the threshold of the same name.
CHECKS = ("loss_ratio", "shared", "unexplained", "posture_change", "start_spread")


def is_suspect(checks: dict, thresholds) -> bool:
    """Whether any check of CHECKS exceeds its threshold (`thresholds.<check>`; null: not used)."""
    return any(
        checks.get(name) is not None and thresholds[name] is not None and checks[name] > float(thresholds[name])
        for name in CHECKS
    )
