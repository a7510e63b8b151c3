"""`invrender.fit_mesh`: mesh-fit on arrays in memory, through `fit_with_config`, which `mesh-fit`
calls on each stack it reads (one code path for both)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Unpack

import numpy as np
import torch
import trimesh
from omegaconf import DictConfig

from invrender.config import ConfigError, check_config_values
from invrender.core.geometry.meshes import Mesh, check_inside, check_mesh, read_mesh
from invrender.core.io import InputError, check_axes_image, check_image, expect_axes
from invrender.core.optim.phases import PhaseRecord
from invrender.core.render.psf import principal_axes
from invrender.method import MethodConfig, RunOptions, api_steps, run_options
from invrender.methods.mesh_fit.fit import QUANTITIES
from invrender.methods.mesh_fit.schema import RULES
from invrender.runner import StepCallback

#: The axes mesh-fit takes (and takes a 3D array whose file does not name its axes for): a z-stack.
STACK_AXES = ("ZYX",)


def check_config(cfg: DictConfig, device) -> None:
    check_config_values(cfg, RULES)


CONFIG = MethodConfig(
    "mesh-fit", "mesh_fit", check_config, cpu_only=True, renderer_kind="mesh spectrum", quantities=QUANTITIES
)


@dataclass
class MeshFitResult:
    """What mesh-fit found. Lengths are physical (the voxel size's units), vectors x, y, z."""

    mesh: Mesh  # vertices (V, 3), faces (F, 3) and, for a foam, materials (F, 2); `.to_trimesh()`
    covariance: np.ndarray | None  # (3, 3) the Gaussian PSF's, units^2; None with a measured PSF
    sigmas: np.ndarray | None  # (3,) its standard deviations along `axes`, units
    axes: np.ndarray | None  # (3, 3) its principal axes, one per row (x, y, z components)
    render: np.ndarray  # (z, y, x) float32: the modelled stack, in the input's grey values
    metrics: dict  # mse, ssim, psnr against the stack, final losses, steps, voxel size, sizes
    losses: list[float]  # the shape loss at every step
    phases: list[PhaseRecord]
    warning: str | None = None  # set when the fit diverged and stopped early


def fit_mesh(
    stack: np.ndarray,
    *,
    axes: str | None = None,
    channel: int | None = None,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    init: Mesh | trimesh.Trimesh | str | os.PathLike | None = None,
    cells: int | None = None,
    psf: np.ndarray | None = None,
    **run: Unpack[RunOptions],
) -> MeshFitResult:
    """Fit cell surface meshes and the microscope's PSF to a fluorescence stack (deltaMic).

    stack: (z, y, x) intensities; axes (as `--axes`) names its dimensions in tifffile's letters when
    they are others, e.g. "ZCYX" with `channel`, the channel to use (0-based, as `--channel`).
    voxel_size: (z, y, x) physical size of a voxel; the mesh comes
    back in these units. init: the mesh to start from (physical units, x y z), a `trimesh.Trimesh`
    or a mesh file; default a sphere fitted to the bright region, or with `cells` a foam of that
    many cells. psf: a measured bead stack at the same voxel size, fitted with instead of a Gaussian.
    run: config, overrides, device, seed and progress (`RunOptions`), as the command line's
    `invrender mesh-fit --config NAME --device D --seed N key=value ...`.
    Raises InputError or ConfigError (one line) on bad input, as the command line does.
    """
    run = run_options("fit_mesh", run)
    cfg, device = CONFIG.resolve(run["config"], run["overrides"], run["device"])
    if init is not None and cells is not None:
        raise ConfigError("init and cells: give one (a mesh to start from, or a foam of N cells)")
    checked = check_axes_image(stack, "stack", axes, channel=channel)
    stack = expect_axes(checked, "stack", STACK_AXES, STACK_AXES).array
    spacing = tuple(float(v) for v in voxel_size)
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise InputError("voxel_size", f"{voxel_size}: give three positive sizes z, y, x")
    init_name = "init"
    if isinstance(init, str | os.PathLike):
        init_name, init = str(init), read_mesh(init)
    elif init is not None:
        if isinstance(init, trimesh.Trimesh):
            init = Mesh(init.vertices, init.faces)
        elif not isinstance(init, Mesh):
            raise InputError(
                "init", f"a {type(init).__name__}: give an invrender.Mesh, a trimesh.Trimesh or a mesh file"
            )
        materials = None if init.materials is None else np.asarray(init.materials, np.int64)
        try:
            init = Mesh(np.asarray(init.vertices, np.float64), np.asarray(init.faces, np.int64), materials)
        except (TypeError, ValueError) as err:
            raise InputError("init", f"vertices and faces must be numbers ({err})") from None
        check_mesh("init", init)
    bead = None if psf is None else check_image(psf, "psf", ndims=(3,))
    with api_steps(run["progress"]) as on_step:
        return fit_with_config(
            stack, spacing, init, cells, bead, cfg, device, run["seed"], on_step, init_source=init_name
        )


def fit_with_config(
    stack: np.ndarray,
    spacing: tuple[float, float, float],
    init: Mesh | None,
    cells: int | None,
    bead: np.ndarray | None,
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step: StepCallback | None,
    source: str = "stack",
    init_source: str = "init",
    psf_source: str = "psf",
) -> MeshFitResult:
    """`fit_mesh` with its config composed and checked, on a checked stack and voxel size; the
    sources name the stack, the init and the bead stack in errors (files on the command line)."""
    from invrender.methods.mesh_fit.fit import bright_region_sphere, fit_stack, image_metrics
    from invrender.methods.mesh_fit.foam import foam_mesh

    extent = np.array([n * d for n, d in zip(stack.shape[::-1], spacing[::-1])])  # x y z
    if init is not None:
        check_inside(init_source, init, extent)
    elif cells is not None:
        try:
            foam = cfg.init.foam
            init = foam_mesh(
                stack, spacing, cells, float(cfg.init.bright_fraction), int(foam.step), int(foam.smoothing), seed
            )
        except ValueError as err:
            raise InputError(source, f"cannot build a foam of {cells} cells: {err}") from None
    else:
        try:
            init = bright_region_sphere(stack, spacing, float(cfg.init.bright_fraction), int(cfg.init.subdivisions))
        except ValueError as err:
            raise InputError(source, f"cannot place the initial sphere: {err}") from None
    if bead is not None and np.clip(bead - np.median(bead), 0, None).sum() <= 0:
        raise InputError(psf_source, "the bead stack has no signal above its median")
    fitted = fit_stack(stack, spacing, init, cfg, device, seed, on_step, bead)
    sigmas = axes = None
    if fitted.covariance is not None:
        sigmas, axes = (np.asarray(v) for v in principal_axes(fitted.covariance))
    final = fitted.phases[-1].final if fitted.phases else {}
    metrics = {
        **image_metrics(fitted.render, stack),
        "final_losses": final,
        "steps": len(fitted.losses),
        "voxel_size": spacing,
        "vertices": len(fitted.mesh.vertices),
        "faces": len(fitted.mesh.faces),
    }
    covariance = None if fitted.covariance is None else np.asarray(fitted.covariance)
    return MeshFitResult(
        fitted.mesh,
        covariance,
        sigmas,
        axes,
        fitted.render.astype(np.float32),
        metrics,
        fitted.losses,
        fitted.phases,
        fitted.warning,
    )
