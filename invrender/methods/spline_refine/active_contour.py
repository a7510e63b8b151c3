"""The classical baseline: scikit-image's active contour (Kass et al. snakes) on open curves.

One spline at a time, as the paper compares against: the init polyline, resampled to
`cfg.active_contour.points` points, evolves on the smoothed, normalised image under its line
(intensity) and edge forces with free ends.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig
from scipy.ndimage import gaussian_filter
from skimage.segmentation import active_contour

from invrender.core.io import normalise_intensity
from invrender.core.metrics import resample_curve
from invrender.methods.spline_refine.fit import body_polarity


def active_contour_frame(image: np.ndarray, records: list[dict], cfg: DictConfig) -> list[dict]:
    """Refine each init spline of `records` on the 2D `image` independently; returns records."""
    ac = cfg.active_contour
    normalised = normalise_intensity(image)[0]
    polarity = body_polarity(normalised, cfg.init.polarity)
    smoothed = gaussian_filter(normalised, float(ac.smoothing))
    out = []
    for rec in records:
        snake_xy = resample_curve(np.asarray(rec["points"], dtype=np.float64), int(ac.points))
        # skimage snakes are (row, col); w_line > 0 attracts to bright, so dark bodies flip it.
        snake_rc = active_contour(
            smoothed,
            snake_xy[:, ::-1],
            alpha=float(ac.alpha),
            beta=float(ac.beta),
            gamma=float(ac.gamma),
            w_line=polarity * float(ac.w_line),
            w_edge=float(ac.w_edge),
            max_num_iter=int(ac.max_num_iter),
            convergence=float(ac.convergence),
            boundary_condition="free",
        )
        points = resample_curve(snake_rc[:, ::-1], int(cfg.output.points))
        out.append({"id": rec["id"], "points": points, "widths": None})
    return out
