"""`--diameter`: cell-seg's sizes in pixels, scaled from the cell diameter its config was tuned for
(the config's `diameter`) to the input's, as cellpose's `--diameter` scales its input.

Cells D pixels across look like the config's cells magnified by s = D / diameter, so every length
in pixels scales by s and every area by s^2: the seeds' blob scales and smoothing, the largest
radius (which bounds the rendering windows), the PSF's initial widths, the pruning and splitting
sizes, stage 2's crops, boundary and smallest object, and the centres' step size. The smoothness
prior is per pixel of the frame but sums over cells, so its weight scales by s^2 too (a frame of
larger cells holds fewer of them per pixel). Left alone: what is relative to the cells (tracking in
mean radii, area ratios), to the frame (the background grid) or to intensities, and the U-Net's
widths and tile (its field of view is fixed; its tile is a memory bound).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

#: Config keys in pixels, and the power of the scale s they take: 1 for lengths, 2 for areas (and
#: the smoothness weight, see the module docstring).
SIZES: dict[str, int] = {
    "contour.max_radius": 1,
    "seeds.min_sigma": 1,
    "seeds.max_sigma": 1,
    "seeds.smooth": 1,
    "seeds.h": 1,
    "seeds.min_radius": 1,
    "appearance.sigma": 1,
    "appearance.halo.sigma": 1,
    "prune.min_area": 2,
    "merge.min_boundary": 1,
    "split.h": 1,
    "split.min_radius": 1,
    "stage2.crop": 1,
    "stage2.boundary": 1,
    "stage2.min_area": 2,
    "loss.star_smoothness": 2,
}
#: The integer sizes among them, rounded and kept at least 1 (a crop at least one pixel at the
#: U-Net's coarsest level).
WHOLE = ("merge.min_boundary", "stage2.crop", "stage2.boundary")


def diameter_overrides(cfg: DictConfig, diameter: float) -> list[str]:
    """The config overrides that make `cfg`'s sizes fit cells `diameter` px across (and set its
    `diameter` to it): every key of SIZES that is set (not null), times (diameter / cfg.diameter) to
    its power, and the centres' learning-rate scale of every phase that trains them."""
    scale = diameter / float(cfg.diameter)
    overrides = [f"diameter={float(diameter)!r}"]
    for key, power in SIZES.items():
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        scaled = float(value) * scale**power
        if key in WHOLE:
            least = 2 ** len(cfg.stage2.widths) if key == "stage2.crop" else 1
            scaled = max(round(scaled), least)
        overrides.append(f"{key}={scaled!r}")
    for index, phase in enumerate(cfg.phases):
        if "centres" not in phase.train:
            continue
        factors = phase.get("lr_scale")
        if factors is None:
            overrides.append(f"+phases.{index}.lr_scale={{centres: {scale!r}}}")
        else:
            prefix = "" if "centres" in factors else "+"
            overrides.append(f"{prefix}phases.{index}.lr_scale.centres={float(factors.get('centres', 1.0)) * scale!r}")
    return overrides
