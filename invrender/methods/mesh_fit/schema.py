"""The values mesh-fit's config keys may take (configs/mesh_fit/default.yaml holds the keys): one
rule per leaf key, checked with the config before any input is read (`check_config`)."""

from __future__ import annotations

from invrender.core import schema as rule
from invrender.core.optim.phases import phases_rule
from invrender.methods.mesh_fit.model import MeshScene

RULES: dict[str, rule.Rule] = {
    "render.backend": rule.STRING,  # a mesh-spectrum renderer, checked against the registry
    "render.band_threshold": rule.PROBABILITY,
    "render.quadrature.degree": rule.one_of(1, 2, 5),  # the triangle rules of core/render/nufft.py
    "render.quadrature.subdivisions": rule.POSITIVE_INT,
    "render.quadrature.max_phase": rule.POSITIVE,
    "init.subdivisions": rule.NON_NEGATIVE_INT,  # 0: the icosahedron
    "init.bright_fraction": rule.number(0, 1, open_low=True),
    "init.foam.step": rule.POSITIVE_INT,
    "init.foam.smoothing": rule.NON_NEGATIVE_INT,
    "psf.sigma": rule.list_of(rule.POSITIVE, length=3),
    "coarse_to_fine.min_side": rule.NON_NEGATIVE_INT,
    "coarse_to_fine.steps": rule.POSITIVE_INT,
    "shape.lambda": rule.NON_NEGATIVE,
    "loss": rule.WEIGHTS,
    "phases": phases_rule(MeshScene.groups),
}
