"""The values spine-seg's config keys may take (configs/spine_seg/default.yaml holds the keys): one
rule per leaf key, checked with the config before any input is read (`check_config`)."""

from __future__ import annotations

from invrender.core import schema as rule
from invrender.core.optim.phases import phases_rule
from invrender.core.render.sdf import SIGN_TYPES
from invrender.methods.spine_seg.model import SpineModel

RULES: dict[str, rule.Rule] = {
    "template": rule.optional(rule.STRING),  # a folder; null: the shipped template
    "region.margin": rule.NON_NEGATIVE,
    "region.percentiles": rule.list_of(rule.number(0, 100), length=2),  # low < high: check_config
    "chain.extend": rule.BOOLEAN,
    "placement.enabled": rule.BOOLEAN,
    "placement.blur": rule.NON_NEGATIVE,
    "placement.points": rule.POSITIVE_INT,
    "placement.band": rule.POSITIVE,
    "placement.edge_width": rule.POSITIVE,
    "placement.step": rule.POSITIVE,
    "placement.posterior_reach": rule.NON_NEGATIVE,
    "placement.left_reach": rule.NON_NEGATIVE,
    "placement.superior_reach": rule.NON_NEGATIVE,
    "placement.scales": rule.list_of(rule.POSITIVE),
    "placement.rotations": rule.list_of(rule.NUMBER),
    "placement.refine_reach": rule.NON_NEGATIVE,
    "shape.modes": rule.POSITIVE_INT,
    "appearance.frequencies": rule.POSITIVE_INT,
    "appearance.scale": rule.POSITIVE,
    "appearance.max_frequency": rule.POSITIVE,
    "appearance.hidden": rule.POSITIVE_INT,
    "sdf.sign": rule.one_of(*SIGN_TYPES),
    "sdf.workers": rule.NON_NEGATIVE_INT,  # 0: torch's thread count
    "points.count": rule.POSITIVE_INT,
    "points.uniform_fraction": rule.PROBABILITY,
    "points.sigmas": rule.list_of(rule.POSITIVE),
    "coarse_to_fine.levels": rule.POSITIVE_INT,
    "loss": rule.WEIGHTS,
    "phases": phases_rule(SpineModel.groups),
}
