"""The values spline-refine's config keys may take (configs/spline_refine/default.yaml holds the
keys): one rule per leaf key, checked with the config before any input is read (`check_config`)."""

from __future__ import annotations

from invrender.core.optim.phases import phases_rule
from invrender.core.schema import (
    BOOLEAN,
    NON_NEGATIVE,
    NUMBER,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    STRING,
    WEIGHTS,
    Rule,
    either,
    integer,
    number,
    one_of,
)
from invrender.methods.spline_refine.model import SplineScene

METHODS = ("render", "active-contour")
AT_LEAST_TWO = integer(2)  # a spline's knots, a profile's nodes, a curve's points: one would divide by zero

RULES: dict[str, Rule] = {
    "method": one_of(*METHODS),
    "model.knots": AT_LEAST_TWO,
    "model.profile_nodes": AT_LEAST_TWO,
    "model.background_grid": either(one_of(0), AT_LEAST_TWO),  # 0: no background grid
    "render.backend": STRING,  # a curve renderer, checked against the registry
    "render.points_per_pixel": POSITIVE,
    "render.max_points": AT_LEAST_TWO,
    "render.cut": POSITIVE,
    "render.peak_scales_with_width": BOOLEAN,
    "init.polarity": one_of("auto", "dark", "bright"),
    "init.relative_width": POSITIVE,
    "init.taper_exponent": NON_NEGATIVE,
    "init.tip_ratio": PROBABILITY,
    "init.mix": PROBABILITY,
    "prior.width": POSITIVE,
    "prior.min_width_ratio": number(0, 1, open_low=True),
    "loss": WEIGHTS,
    "phases": phases_rule(SplineScene.groups),
    "output.points": AT_LEAST_TWO,
    "output.own_pixels_threshold": PROBABILITY,
    "active_contour.smoothing": NON_NEGATIVE,
    "active_contour.alpha": NON_NEGATIVE,
    "active_contour.beta": NON_NEGATIVE,
    "active_contour.gamma": POSITIVE,  # the time step
    "active_contour.w_line": NUMBER,
    "active_contour.w_edge": NUMBER,
    "active_contour.max_num_iter": POSITIVE_INT,
    "active_contour.convergence": NON_NEGATIVE,
    "active_contour.points": AT_LEAST_TWO,
}
