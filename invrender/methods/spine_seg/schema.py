"""The values spine-seg's config keys may take (configs/spine_seg/default.yaml holds the keys): one
rule per leaf key, checked with the config before any input is read (`check_config`)."""

from __future__ import annotations

from invrender.core.optim.phases import phases_rule
from invrender.core.render.sdf import SIGN_TYPES
from invrender.core.schema import (
    BOOLEAN,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    NUMBER,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    STRING,
    WEIGHTS,
    Rule,
    list_of,
    number,
    one_of,
    optional,
)
from invrender.methods.spine_seg.model import SpineModel

RULES: dict[str, Rule] = {
    "template": optional(STRING),  # a folder; null: the shipped template
    "region.margin": NON_NEGATIVE,
    "region.percentiles": list_of(number(0, 100), length=2),  # low < high: check_config
    "chain.extend": BOOLEAN,
    "placement.enabled": BOOLEAN,
    "placement.blur": NON_NEGATIVE,
    "placement.points": POSITIVE_INT,
    "placement.band": POSITIVE,
    "placement.edge_width": POSITIVE,
    "placement.step": POSITIVE,
    "placement.posterior_reach": NON_NEGATIVE,
    "placement.left_reach": NON_NEGATIVE,
    "placement.superior_reach": NON_NEGATIVE,
    "placement.scales": list_of(POSITIVE),
    "placement.rotations": list_of(NUMBER),
    "placement.refine_reach": NON_NEGATIVE,
    "shape.modes": POSITIVE_INT,
    "appearance.frequencies": POSITIVE_INT,
    "appearance.scale": POSITIVE,
    "appearance.max_frequency": POSITIVE,
    "appearance.hidden": POSITIVE_INT,
    "sdf.sign": one_of(*SIGN_TYPES),
    "sdf.workers": NON_NEGATIVE_INT,  # 0: torch's thread count
    "points.count": POSITIVE_INT,
    "points.uniform_fraction": PROBABILITY,
    "points.sigmas": list_of(POSITIVE),
    "coarse_to_fine.levels": POSITIVE_INT,
    "loss": WEIGHTS,
    "phases": phases_rule(SpineModel.groups),
}
