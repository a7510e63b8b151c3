"""Fitting a mesh and a PSF to a fluorescence stack: the initial mesh, the staggered optimisation,
and the quality of the result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh
from omegaconf import DictConfig

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
    """Fit `init` (physical units) and a Gaussian PSF to `stack` (z, y, x) with voxel `spacing`; with
    a `bead` stack (same voxel size), its measured PSF is used instead and only the shape and the
    intensity are fitted."""
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
        tuple(cfg.psf.sigma),
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

    phases, weights = list(cfg.phases), dict(cfg.loss)
    history = run_phases_recorded(
        scene,
        objective,
        phases,
        weights,
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
