"""The values spline-refine's config keys may take (configs/spline_refine/default.yaml holds the
keys): one rule per leaf key, checked with the config before any input is read (`check_config`)."""

from __future__ import annotations

from invrender.core import schema as rule
from invrender.core.optim.phases import phases_rule
from invrender.methods.spline_refine.model import SplineScene

METHODS = ("render", "active-contour")
AT_LEAST_TWO = rule.integer(2)  # a spline's knots, a profile's nodes, a curve's points: one would divide by zero

RULES: dict[str, rule.Rule] = {
    "method": rule.one_of(*METHODS),
    "model.knots": AT_LEAST_TWO,
    "model.profile_nodes": AT_LEAST_TWO,
    "model.background_grid": rule.either(rule.one_of(0), AT_LEAST_TWO),  # 0: no background grid
    "render.backend": rule.STRING,  # a curve renderer, checked against the registry
    "render.points_per_pixel": rule.POSITIVE,
    "render.max_points": AT_LEAST_TWO,
    "render.cut": rule.POSITIVE,
    "render.peak_scales_with_width": rule.BOOLEAN,
    "init.polarity": rule.one_of("auto", "dark", "bright"),
    "init.relative_width": rule.POSITIVE,
    "init.taper_exponent": rule.NON_NEGATIVE,
    "init.tip_ratio": rule.PROBABILITY,
    "init.mix": rule.number(0, 1, open_low=True, open_high=True),  # a logit: both ends unreachable
    "prior.width": rule.POSITIVE,
    "prior.min_width_ratio": rule.number(0, 1, open_low=True),
    "loss": rule.WEIGHTS,
    "phases": phases_rule(SplineScene.groups),
    "groups.enabled": rule.BOOLEAN,
    "groups.reach": rule.POSITIVE,
    "groups.unit": rule.POSITIVE,
    "video.propagate": rule.BOOLEAN,
    "video.lost_factor": rule.number(1, open_low=True),
    "video.phases": phases_rule(SplineScene.groups),
    "output.points": AT_LEAST_TWO,
    "output.own_pixels_threshold": rule.PROBABILITY,
    "output.start_tolerance": rule.NON_NEGATIVE,
    "flag.loss_ratio": rule.POSITIVE,
    "flag.shared": rule.PROBABILITY,
    "flag.unexplained": rule.NON_NEGATIVE,
    "flag.posture_change": rule.NON_NEGATIVE,
    "flag.start_spread": rule.optional(rule.NON_NEGATIVE),
    "restart.enabled": rule.BOOLEAN,
    "restart.margin": rule.PROBABILITY,
    "restart.loss": rule.WEIGHTS,
    "restart.when.loss_ratio": rule.POSITIVE,
    "restart.when.shared": rule.PROBABILITY,
    "restart.when.unexplained": rule.NON_NEGATIVE,
    "restart.when.posture_change": rule.NON_NEGATIVE,
    "restart.when.start_spread": rule.optional(rule.NON_NEGATIVE),
    "restart.phases": phases_rule(SplineScene.groups),
    "restart.polish": phases_rule(SplineScene.groups),
    "active_contour.smoothing": rule.NON_NEGATIVE,
    "active_contour.alpha": rule.NON_NEGATIVE,
    "active_contour.beta": rule.NON_NEGATIVE,
    "active_contour.gamma": rule.POSITIVE,  # the time step
    "active_contour.w_line": rule.NUMBER,
    "active_contour.w_edge": rule.NUMBER,
    "active_contour.max_num_iter": rule.POSITIVE_INT,
    "active_contour.convergence": rule.NON_NEGATIVE,
    "active_contour.points": AT_LEAST_TWO,
}
