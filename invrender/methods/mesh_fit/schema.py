"""The values mesh-fit's config keys may take (configs/mesh_fit/default.yaml holds the keys): one
rule per leaf key, checked with the config before any input is read (`check_config`)."""

from __future__ import annotations

from invrender.core.optim.phases import phases_rule
from invrender.core.schema import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    STRING,
    WEIGHTS,
    Rule,
    list_of,
    number,
    one_of,
)
from invrender.methods.mesh_fit.model import MeshScene

RULES: dict[str, Rule] = {
    "render.backend": STRING,  # a mesh-spectrum renderer, checked against the registry
    "render.band_threshold": PROBABILITY,
    "render.quadrature.degree": one_of(1, 2, 5),  # the triangle rules of core/render/nufft.py
    "render.quadrature.subdivisions": POSITIVE_INT,
    "render.quadrature.max_phase": POSITIVE,
    "init.subdivisions": NON_NEGATIVE_INT,  # 0: the icosahedron
    "init.bright_fraction": number(0, 1, open_low=True),
    "init.foam.step": POSITIVE_INT,
    "init.foam.smoothing": NON_NEGATIVE_INT,
    "psf.sigma": list_of(POSITIVE, length=3),
    "shape.lambda": NON_NEGATIVE,
    "loss": WEIGHTS,
    "phases": phases_rule(MeshScene.groups),
}
