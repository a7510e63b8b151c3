"""The values cell-seg's config keys may take (configs/cell_seg/default.yaml holds the keys): one
rule per leaf key, checked with the config before any input is read (`check_config`)."""

from __future__ import annotations

from invrender.core import schema as rule
from invrender.core.optim.phases import phases_rule
from invrender.methods.cell_seg.model import CellScene

STAGES = ("1", "2", "both")
UNIT_OPEN_LOW = rule.number(0, 1, open_low=True)  # a share that cannot be 0

RULES: dict[str, rule.Rule] = {
    "diameter": rule.POSITIVE,  # px, the cell size the other sizes are for (--diameter scales them: sizes.py)
    "render.backend": rule.STRING,  # a polygon renderer, checked against the registry
    "contour.radii": rule.integer(3),
    "contour.harmonics": rule.NON_NEGATIVE_INT,  # at most radii / 2: check_config
    "contour.max_radius": rule.POSITIVE,
    "seeds.method": rule.one_of("log", "distance"),
    "seeds.min_sigma": rule.POSITIVE,  # at most max_sigma: check_config
    "seeds.max_sigma": rule.POSITIVE,
    "seeds.num_sigma": rule.POSITIVE_INT,
    "seeds.blob_threshold": rule.NON_NEGATIVE,
    "seeds.overlap": rule.PROBABILITY,
    "seeds.smooth": rule.NON_NEGATIVE,
    "seeds.threshold": rule.either(rule.one_of("otsu", "li"), rule.NUMBER),
    "seeds.h": rule.NON_NEGATIVE,
    "seeds.min_radius": rule.NON_NEGATIVE,
    "appearance.sigma": rule.POSITIVE,
    "appearance.halo.sigma": rule.POSITIVE,
    "appearance.halo.weight": rule.number(0, 1, open_low=True, open_high=True),
    "appearance.background_grid": rule.POSITIVE_INT,
    "prune.min_area": rule.NON_NEGATIVE,
    "prune.min_brightness": rule.NON_NEGATIVE,
    "prune.max_overlap": rule.PROBABILITY,
    "merge.contrast": rule.optional(rule.POSITIVE),  # null: no merging
    "merge.min_boundary": rule.POSITIVE_INT,
    "split.h": rule.optional(rule.POSITIVE),  # null: no split at a neck
    "split.min_radius": rule.NON_NEGATIVE,
    "split.valley": rule.optional(UNIT_OPEN_LOW),  # null: no split in halves
    "split.step": UNIT_OPEN_LOW,
    "split.max_area_ratio": rule.POSITIVE,
    "split.min_area_ratio": rule.POSITIVE,
    "residual.level": rule.POSITIVE,
    "rounds": rule.POSITIVE_INT,
    "refit_steps_factor": rule.POSITIVE,
    "loss": rule.WEIGHTS,
    "phases": phases_rule(CellScene.groups),
    "tracking.steps_factor": rule.POSITIVE,
    "tracking.max_shift": rule.POSITIVE,
    "tracking.min_division_distance": rule.POSITIVE,
    "stage": rule.Rule(
        f"one of {', '.join(STAGES)} (on the command line: --stage)", lambda v: isinstance(v, str) and v in STAGES
    ),
    "stage2.train_frames": rule.POSITIVE_INT,
    "stage2.crop": rule.POSITIVE_INT,  # at least 2**len(widths): check_config
    "stage2.batch": rule.POSITIVE_INT,
    "stage2.steps": rule.POSITIVE_INT,
    "stage2.lr": rule.POSITIVE,
    "stage2.widths": rule.list_of(rule.POSITIVE_INT),
    "stage2.convs": rule.POSITIVE_INT,
    "stage2.dropout": rule.number(0, 1, open_high=True),
    "stage2.relu_each": rule.BOOLEAN,
    "stage2.boundary": rule.POSITIVE_INT,
    "stage2.min_area": rule.NON_NEGATIVE,
    "stage2.tile": rule.NON_NEGATIVE_INT,  # 0: every frame in one pass
    "stage2.min_iou": UNIT_OPEN_LOW,
    "stage2.division_cover": UNIT_OPEN_LOW,
}
