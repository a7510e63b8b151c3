"""The values cell-seg's config keys may take (configs/cell_seg/default.yaml holds the keys): one
rule per leaf key, checked with the config before any input is read (`check_config`)."""

from __future__ import annotations

from invrender.core.optim.phases import phases_rule
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
    either,
    integer,
    list_of,
    number,
    one_of,
    optional,
)
from invrender.methods.cell_seg.model import CellScene

STAGES = ("1", "2", "both")
UNIT_OPEN_LOW = number(0, 1, open_low=True)  # a share that cannot be 0

RULES: dict[str, Rule] = {
    "render.backend": STRING,  # a polygon renderer, checked against the registry
    "contour.radii": integer(3),
    "contour.harmonics": NON_NEGATIVE_INT,  # at most radii / 2: check_config
    "contour.max_radius": POSITIVE,
    "seeds.method": one_of("log", "distance"),
    "seeds.min_sigma": POSITIVE,  # at most max_sigma: check_config
    "seeds.max_sigma": POSITIVE,
    "seeds.num_sigma": POSITIVE_INT,
    "seeds.blob_threshold": NON_NEGATIVE,
    "seeds.overlap": PROBABILITY,
    "seeds.smooth": NON_NEGATIVE,
    "seeds.threshold": either(one_of("otsu", "li"), NUMBER),
    "seeds.h": NON_NEGATIVE,
    "seeds.min_radius": NON_NEGATIVE,
    "appearance.sigma": POSITIVE,
    "appearance.halo.sigma": POSITIVE,
    "appearance.halo.weight": number(0, 1, open_low=True, open_high=True),
    "appearance.background_grid": POSITIVE_INT,
    "prune.min_area": NON_NEGATIVE,
    "prune.min_brightness": NON_NEGATIVE,
    "prune.max_overlap": PROBABILITY,
    "merge.contrast": optional(POSITIVE),  # null: no merging
    "merge.min_boundary": POSITIVE_INT,
    "split.h": optional(POSITIVE),  # null: no split at a neck
    "split.min_radius": NON_NEGATIVE,
    "split.valley": optional(UNIT_OPEN_LOW),  # null: no split in halves
    "split.step": UNIT_OPEN_LOW,
    "split.max_area_ratio": POSITIVE,
    "split.min_area_ratio": POSITIVE,
    "residual.level": POSITIVE,
    "rounds": POSITIVE_INT,
    "loss": WEIGHTS,
    "phases": phases_rule(CellScene.groups),
    "tracking.steps_factor": POSITIVE,
    "tracking.max_shift": POSITIVE,
    "tracking.min_division_distance": POSITIVE,
    "stage": Rule(
        f"one of {', '.join(STAGES)} (on the command line: --stage)", lambda v: isinstance(v, str) and v in STAGES
    ),
    "stage2.train_frames": POSITIVE_INT,
    "stage2.crop": POSITIVE_INT,  # at least 2**len(widths): check_config
    "stage2.batch": POSITIVE_INT,
    "stage2.steps": POSITIVE_INT,
    "stage2.lr": POSITIVE,
    "stage2.widths": list_of(POSITIVE_INT),
    "stage2.convs": POSITIVE_INT,
    "stage2.dropout": number(0, 1, open_high=True),
    "stage2.relu_each": BOOLEAN,
    "stage2.boundary": POSITIVE_INT,
    "stage2.min_area": NON_NEGATIVE,
    "stage2.tile": NON_NEGATIVE_INT,  # 0: every frame in one pass
    "stage2.min_iou": UNIT_OPEN_LOW,
    "stage2.division_cover": UNIT_OPEN_LOW,
}
