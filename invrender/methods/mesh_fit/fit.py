"""Fitting a mesh and a PSF to a fluorescence stack: the initial mesh, the staggered optimisation,
and the quality of the result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh
from omegaconf import DictConfig, OmegaConf

from invrender.core.geometry.meshes import Mesh
from invrender.core.io import finite_or_none
from invrender.core.optim.phases import PhaseRecord, run_phases_recorded
from invrender.core.render.psf import measured_transfer
from invrender.core.render.registry import get_renderer
from invrender.core.render.spectrum import Grid
from invrender.methods.mesh_fit.model import MeshScene


def bright_region_sphere(
    stack: np.ndarray, spacing: tuple[float, float, float], bright_fraction: float, subdivisions: int
) -> Mesh:
    """An icosphere at the intensity-weighted centre of the bright voxels, with their mean distance
    from it as radius (a membrane stain is bright on the surface), in physical units."""
    level = bright_fraction * np.percentile(stack, 99.9)
    weight = np.where(stack > level, stack, 0.0)
    if weight.sum() <= 0:
        raise ValueError("no bright region to start from")
    axes = np.meshgrid(*(np.arange(n) * d for n, d in zip(stack.shape, spacing)), indexing="ij")  # z, y, x
    coords = np.stack([axes[2], axes[1], axes[0]], axis=-1)  # x, y, z
    centre = (weight[..., None] * coords).reshape(-1, 3).sum(axis=0) / weight.sum()
    radius = (weight * np.linalg.norm(coords - centre, axis=-1)).sum() / weight.sum()
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(np.asarray(sphere.vertices) + centre, np.asarray(sphere.faces, dtype=np.int64))


#: What the objective returns for the loss registry.
QUANTITIES = frozenset({"render", "target"})


@dataclass
class MeshFit:
    mesh: Mesh  # physical units
    covariance: np.ndarray | None  # (3, 3) physical units squared, x y z; None with a measured PSF
    render: np.ndarray  # (nz, ny, nx) the modelled stack, in the input's grey values
    phases: list[PhaseRecord]
    losses: list[float] = field(default_factory=list)  # the shape loss at every step
    warning: str | None = None


def fit_stack(
    stack: np.ndarray,
    spacing: tuple[float, float, float],
    init: Mesh,
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step=None,
    bead: np.ndarray | None = None,
) -> MeshFit:
    """Fit `init` (physical units) and a Gaussian PSF to `stack` (z, y, x) with voxel `spacing`,
    coarse to fine: first on the stack binned 2x (4x, ...) while its smallest side stays at least
    `coarse_to_fine.min_side` voxels, for at most `coarse_to_fine.steps` steps a phase, each level
    starting from the one before. With a `bead` stack (same voxel size), its measured PSF is used
    instead, only the shape and the intensity are fitted, and only at full resolution."""
    factors = [1] if bead is not None else bin_factors(stack.shape, int(cfg.coarse_to_fine.min_side))
    mesh, sigmas = init, tuple(float(s) for s in cfg.psf.sigma)
    phases, losses, warning = [], [], None
    for factor in factors:
        offset = binned_origin(spacing, factor)
        level = fit_level(
            bin_stack(stack, factor),
            tuple(d * factor for d in spacing),
            Mesh(mesh.vertices - offset, mesh.faces, mesh.materials),
            tuple(s / factor for s in sigmas),
            level_phases(cfg, factor),
            cfg,
            device,
            seed,
            on_step,
            bead,
        )
        mesh = Mesh(level.mesh.vertices + offset, level.mesh.faces, level.mesh.materials)
        phases, losses, warning = phases + level.phases, losses + level.losses, level.warning
        if warning is not None:
            break
        if factor > 1:  # the coarse level's Gaussian includes the binning's box: take its variance off
            box = np.array([d**2 * (factor**2 - 1) / 12 for d in spacing[::-1]])  # x y z
            variances = np.maximum(np.diag(level.covariance) - box, (0.5 * np.array(spacing[::-1])) ** 2)
            sigmas = tuple(np.sqrt(variances) / min(spacing))  # never below half a voxel, in voxels
    return MeshFit(mesh, level.covariance, level.render, phases, losses, warning)


def bin_factors(shape: tuple[int, int, int], min_side: int) -> list[int]:
    """The bin factors of the levels, coarse to fine (..., 4, 2, 1): 2x more while the binned
    stack's smallest side stays at least `min_side` voxels; [1] with `min_side` 0."""
    factors = [1]
    while min_side > 0 and min(shape) // (2 * factors[0]) >= min_side:
        factors.insert(0, 2 * factors[0])
    return factors


def bin_stack(stack: np.ndarray, factor: int) -> np.ndarray:
    """(nz // f, ny // f, nx // f) means of f^3 blocks of voxels (a remainder at the far sides is
    dropped)."""
    if factor == 1:
        return stack
    nz, ny, nx = (n // factor for n in stack.shape)
    blocks = stack[: nz * factor, : ny * factor, : nx * factor].reshape(nz, factor, ny, factor, nx, factor)
    return blocks.mean(axis=(1, 3, 5))


def binned_origin(spacing: tuple[float, float, float], factor: int) -> np.ndarray:
    """(3,) x y z: where the centre of binned voxel [0, 0, 0] sits in the stack's coordinates (the
    centre of its f^3 block), so that a mesh at `vertices - origin` is in the binned stack's."""
    return np.array([d * (factor - 1) / 2 for d in spacing[::-1]])


def level_phases(cfg: DictConfig, factor: int) -> list[dict]:
    """The phases of the level binned `factor` x: the config's, on a binned level renamed after it
    and each run at most `coarse_to_fine.steps` steps (in place of its own `steps`)."""
    phases = OmegaConf.to_container(cfg.phases)
    if factor == 1:
        return phases
    steps = int(cfg.coarse_to_fine.steps)
    return [{**p, "name": f"{p['name']}, binned {factor}x", "steps": steps} for p in phases]


def fit_level(
    stack: np.ndarray,
    spacing: tuple[float, float, float],
    init: Mesh,
    sigmas: tuple[float, float, float],
    phases: list[dict],
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step,
    bead: np.ndarray | None,
) -> MeshFit:
    """One level of `fit_stack`: `init` and a Gaussian PSF started at `sigmas` (x y z, voxels)
    fitted to `stack` by `phases`."""
    torch.manual_seed(seed)
    unit = min(spacing)
    grid = Grid(stack.shape, spacing)
    measured = None if bead is None else measured_transfer(bead, grid)
    scene = MeshScene(
        init.vertices,
        init.faces,
        init.face_weights,
        grid,
        unit,
        sigmas,
        float(cfg.shape["lambda"]),
        get_renderer(cfg.render.backend, device, "mesh spectrum"),
        _render_options(cfg),
        float(cfg.render.band_threshold),
        measured,
    )
    target = torch.from_numpy(np.asarray(stack, dtype=np.float64))
    with torch.no_grad():  # the intensity scale and offset that best explain the stack with the initial mesh
        density = scene.density(scene.full_band)
        design = torch.stack([density.flatten(), torch.ones(density.numel(), dtype=torch.float64)], dim=1)
        scale, offset = torch.linalg.lstsq(design, target.flatten()[:, None]).solution[:, 0]
        scene.log_scale.fill_(float(torch.log(scale.clamp_min(1e-12))))
        scene.offset.fill_(float(offset))

    def objective(model: MeshScene, context) -> dict:
        spectrum = context.option("spectrum", "band")
        band = model.full_band if spectrum == "full" else model.band(context.option("band_threshold"))
        return {"render": model(band)[None], "target": target[None]}

    history = run_phases_recorded(
        scene,
        objective,
        phases,
        dict(cfg.loss),
        on_step,
        seed=seed,
        select_by="intensity_weighted_mse",
        bound=MeshScene.divergence,
    )
    with torch.no_grad():
        render = scene(scene.full_band).numpy()
    return MeshFit(
        Mesh(scene.vertices_physical(), init.faces, init.materials),
        scene.covariance_physical(),
        render,
        history.phases,
        history.losses,
        history.warning,
    )


def _render_options(cfg: DictConfig) -> dict:
    if cfg.render.backend == "nufft":
        quadrature = cfg.render.quadrature
        return {
            "degree": int(quadrature.degree),
            "subdivisions": int(quadrature.subdivisions),
            "max_phase": float(quadrature.max_phase),
        }
    return {}


def image_metrics(render: np.ndarray, stack: np.ndarray) -> dict[str, float | None]:
    """MSE, SSIM and PSNR of the render against the stack (data range of the stack); None where a
    value is not finite (JSON has no NaN; a perfect render has an infinite PSNR)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    data_range = float(stack.max() - stack.min())
    return {
        "mse": finite_or_none(np.mean((render - stack) ** 2)),
        "ssim": finite_or_none(structural_similarity(stack, render, data_range=data_range)),
        "psnr": finite_or_none(peak_signal_noise_ratio(stack, render, data_range=data_range)),
    }
