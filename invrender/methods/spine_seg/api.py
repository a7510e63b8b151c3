"""`invrender.segment_spine`: spine-seg on a CT in memory. `spine-seg` calls its
`segment_with_config` on each CT it reads, as `segment_spine` does once its config is composed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

import numpy as np
from omegaconf import DictConfig

from invrender.config import ConfigError, check_config_values
from invrender.core.geometry.meshes import Mesh
from invrender.core.io import InputError, check_image
from invrender.core.metrics import dice_per_label
from invrender.core.optim.phases import PhaseRecord
from invrender.core.volumes import (
    VERTEBRA_NAMES,
    Volume,
    check_affine,
    check_labels,
    check_voxel_size,
    parse_centroids,
    vertebra_name,
)
from invrender.method import MethodConfig, RunOptions, api_steps, run_options
from invrender.methods.spine_seg.fit import QUANTITIES, fit_spine, label_volume
from invrender.methods.spine_seg.frames import chain_frames, cranial_order
from invrender.methods.spine_seg.schema import RULES
from invrender.methods.spine_seg.template import default_template_path, load_template
from invrender.runner import StepCallback

#: Voxel sizes (mm) outside this range are no CT's but a header in another unit or a damaged one: the
#: fit low-passes the CT by Gaussians of a few mm, (mm / voxel size) voxels wide, which at 1e-6 mm
#: take hours; beyond it a vertebra is a voxel or two.
CT_VOXEL_MM = (0.05, 20.0)
#: Two centroids closer than this (mm) are one point given twice: no vertebra is that small.
MIN_CENTROID_GAP_MM = 1.0


def check_config(cfg: DictConfig, device) -> None:
    check_config_values(cfg, RULES)
    low, high = cfg.region.percentiles
    if low >= high:
        raise ConfigError(f"config region.percentiles [{low}, {high}]: the first must be below the second")
    if cfg.template:
        load_template(Path(cfg.template))  # an unusable template is bad input before any job starts


# CPU only: libigl's queries, the cost of a fit, run on the CPU.
CONFIG = MethodConfig("spine-seg", "spine_seg", check_config, cpu_only=True, quantities=QUANTITIES)


@dataclass
class SpineSegResult:
    """What spine-seg found. Lengths are world millimetres (RAS+: what the CT's affine maps voxel
    indices to); vertebrae are VerSe label codes (1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 S1, 28 T13)."""

    labels: np.ndarray  # (I, J, K) int16 on the CT's grid: each voxel's vertebra label, 0 = none
    meshes: dict[int, Mesh]  # per label, cranial first: vertices (V, 3) world mm, faces (F, 3), the template's order
    metrics: dict  # per vertebra name: voxels, placement (what the search moved), dice (with gt); final losses, steps
    losses: list[float]  # the total loss at every step
    phases: list[PhaseRecord]
    warning: str | None = None  # set when the fit diverged and stopped early


def segment_spine(
    volume: np.ndarray,
    affine: np.ndarray,
    centroids: Any,
    *,
    gt: np.ndarray | None = None,
    **run: Unpack[RunOptions],
) -> SpineSegResult:
    """Label every vertebra of a spine CT without training: fit a deformable template mesh per
    vertebra with a learned appearance (Kim and Park).

    volume: the CT `(I, J, K)` in its NIfTI file's voxel order (`nibabel.load(path).get_fdata()`),
    any intensity units (Hounsfield units usually; they are normalised). affine: the 4 x 4 map from
    a voxel index `(i, j, k, 1)` to world mm `(x, y, z, 1)`, RAS+ (`nibabel.load(path).affine`).
    centroids: the vertebral body centroids of at least two vertebrae, as VerSe JSON content
    (`json.load` of a `*_ctd.json`: voxel coordinates in its "direction" axis codes), a mapping
    `{label: (x, y, z)}` or an (N, 4) array of rows `label, x, y, z`, these two in world mm.
    gt: a label mask on the CT's grid `(I, J, K)`, for Dice per vertebra in `metrics`.
    run: config, overrides, device, seed and progress (`RunOptions`), as the command line's
    `invrender spine-seg --config NAME --seed N key=value ...`. The fit runs on the CPU, its
    distance queries in `sdf.workers` spawned processes (default: torch's thread count), so a script
    run as a file calls it under `if __name__ == "__main__":` (Python's rule for spawned processes)
    or passes `sdf.workers=1`. Raises InputError or ConfigError (one line) on bad input, as the
    command line does.
    """
    run = run_options("segment_spine", run)
    cfg, _ = CONFIG.resolve(run["config"], run["overrides"], run["device"])
    data = check_image(volume, "volume", ndims=(3,))
    ct = Volume(data, check_affine("affine", affine), Path("volume"))  # the path names the argument in errors
    check_ct(ct)
    points = parse_centroids("centroids", centroids, ct)
    truth = None
    if gt is not None:
        truth = check_labels("gt", gt)
        if truth.shape != ct.shape:
            raise InputError("gt", f"label mask of shape {truth.shape} is not on the volume's grid {ct.shape}")
    # The fit seeds torch's global generator (the appearance network's initial weights): the
    # caller's generator is given back as it was.
    with api_steps(run["progress"]) as on_step:
        return segment_with_config(ct, points, truth, cfg, run["seed"], on_step)


def segment_with_config(
    volume: Volume,
    centroids: dict[int, np.ndarray],
    truth: np.ndarray | None,
    cfg: DictConfig,
    seed: int,
    on_step: StepCallback | None,
    centroids_source: str = "centroids",
) -> SpineSegResult:
    """`segment_spine` with its config composed and checked, on a read CT that passed `check_ct`
    (its path names it in errors), checked centroids `{label: (3,) world mm}` and, when given, a
    checked label mask on the CT's grid; `centroids_source` names the centroids in errors (their
    file on the command line)."""
    check_chain(centroids_source, centroids)
    template = load_template(Path(cfg.template) if cfg.template else default_template_path())
    fit = fit_spine(volume, centroids, template, cfg, seed, on_step)
    labels = label_volume(volume, fit)
    names = [vertebra_name(label) for label in fit.labels]
    metrics = {
        "vertebrae": dict(zip(names, fit.labels)),
        "final_losses": fit.phases[-1].final if fit.phases else {},
        "steps": len(fit.losses),
        "voxels": {name: int((labels == label).sum()) for name, label in zip(names, fit.labels)},
    }
    if truth is not None:
        dice = dice_per_label(labels, truth, fit.labels)
        metrics["dice"] = {vertebra_name(label): value for label, value in dice.items()}
        metrics["mean_dice"] = float(np.mean(list(dice.values())))
    if fit.placement is not None:
        metrics["placement"] = fit.placement.summary(names)
    meshes = {label: Mesh(vertices, fit.faces) for label, vertices in zip(fit.labels, fit.vertices)}
    return SpineSegResult(labels, meshes, metrics, fit.losses, fit.phases, fit.warning)


def check_ct(volume: Volume) -> None:
    """InputError naming the CT (its path) when its voxel size is absurd for a CT (`CT_VOXEL_MM`):
    checked before its centroids, which such a grid would place wrongly."""
    check_voxel_size(volume, *CT_VOXEL_MM, "a CT")


def check_chain(source: str | Path, centroids: dict[int, np.ndarray]) -> None:
    """InputError naming `source` unless the centroids `{label: (3,) world mm}` make a chain that has
    vertebra frames (`frames.chain_frames`): at least two, no two at one point, and a spine axis that
    does not run front to back."""
    names = [f"{VERTEBRA_NAMES[label]} ({label})" for label in centroids]
    if len(centroids) < 2:
        raise InputError(source, f"a single centroid, {names[0]}: spine-seg needs at least two vertebrae")
    points = np.stack(list(centroids.values()))
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.diag(np.full(len(points), np.inf))
    a, b = np.unravel_index(np.argmin(gaps), gaps.shape)
    if gaps[a, b] < MIN_CENTROID_GAP_MM:
        raise InputError(
            source,
            f"the centroids of {names[a]} and {names[b]} are {gaps[a, b]:.3g} mm apart (less than "
            f"{MIN_CENTROID_GAP_MM:g} mm): one point given twice?",
        )
    try:
        chain_frames(np.stack([centroids[label] for label in sorted(centroids, key=cranial_order)]))
    except ValueError as err:
        raise InputError(source, f"no vertebra frames from these centroids: {err}") from None
