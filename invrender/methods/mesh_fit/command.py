"""`invrender mesh-fit`: jobs, outputs and the command line of the method."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError
from invrender.core.geometry.meshes import read_mesh, write_mesh
from invrender.core.io import InputError, read_image, read_voxel_size, write_json, write_png, write_tiff
from invrender.core.overlay import plot_series
from invrender.inputs import InputItem, parse_voxel_size
from invrender.method import JobContext, MethodSpec, finish_fit
from invrender.methods.mesh_fit.api import CONFIG, fit_with_config
from invrender.options import Arguments, SharedOptions, SynthOut, SynthSeed, VoxelSize, with_shared_options
from invrender.run import run_method
from invrender.runner import Job, StepCallback


def output_paths(out: Path, image: Path, multi_material: bool) -> dict[str, Path]:
    stem = image.name.removesuffix(".tiff").removesuffix(".tif")
    return {
        "mesh": out / f"{stem}.mesh.{'rec' if multi_material else 'ply'}",
        "psf": out / f"{stem}.psf.json",
        "render": out / f"{stem}.render.tif",
        "loss_curve": out / f"{stem}.loss.png",
        "metrics": out / f"{stem}.metrics.json",  # written last: marks a complete output set
    }


def read_bead(path: Path, spacing: tuple[float, float, float]) -> np.ndarray:
    """A measured PSF's bead stack, checked to have the image's voxel size when its file records one."""
    bead = read_image(path, ndims=(3,))
    recorded = read_voxel_size(path)
    if recorded is not None and not np.allclose(recorded, spacing, rtol=1e-3):
        raise InputError(
            path, f"bead stack voxel size {recorded} differs from the image's {spacing}; resample it first"
        )
    return bead


def fit_file(
    image_path: Path,
    init_path: Path | None,
    cells: int | None,
    psf_path: Path | None,
    voxel_size,
    out: Path,
    cfg: DictConfig,
    device,
    seed: int,
    on_step: StepCallback,
) -> dict:
    stack = read_image(image_path, ndims=(3,))
    spacing = voxel_size or read_voxel_size(image_path) or (1.0, 1.0, 1.0)
    if min(spacing) <= 0:
        raise InputError(
            image_path, f"voxel size {spacing} in the file's metadata is not positive; give --voxel-size z,y,x"
        )
    init = None if init_path is None else read_mesh(init_path)
    bead = None if psf_path is None else read_bead(psf_path, spacing)
    fitted = fit_with_config(
        stack, spacing, init, cells, bead, cfg, device, seed, on_step, str(image_path), str(init_path), str(psf_path)
    )

    # Everything the JSON files say is computed before the first file is written.
    paths = output_paths(out, image_path, fitted.mesh.materials is not None)
    units = "physical (voxel size z,y,x = " + ",".join(f"{s:g}" for s in spacing) + ")"
    if fitted.covariance is None:
        psf_record = {"kind": "measured", "file": str(psf_path), "units": units}
    else:
        psf_record = {
            "kind": "gaussian",
            "covariance_xyz": fitted.covariance,
            "sigmas": fitted.sigmas,
            "axes": fitted.axes,
            "units": units,
        }
    result = {
        "loss": fitted.metrics["final_losses"].get("intensity_weighted_mse"),
        "ssim": fitted.metrics["ssim"],
        "psnr": fitted.metrics["psnr"],
        "psf_sigmas": fitted.sigmas,
    }
    write_mesh(paths["mesh"], fitted.mesh)
    write_json(paths["psf"], psf_record)
    write_tiff(paths["render"], fitted.render, voxel_size=spacing)
    write_png(paths["loss_curve"], plot_series(fitted.losses))
    return finish_fit(paths, fitted.metrics, result, fitted.phases, fitted.warning)


def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
    image = item.path
    init, cells, psf = context.options.get("init"), context.options.get("cells"), context.options.get("psf")
    voxel_size = context.options.get("voxel_size")
    multi = cells is not None or (init is not None and init.suffix.lower() == ".rec")

    def work(on_step: StepCallback) -> dict:
        return fit_file(image, init, cells, psf, voxel_size, context.out, cfg, context.device, context.seed, on_step)

    return Job(str(image), [output_paths(context.out, image, multi)["metrics"]], work)


def check_inputs(items: list[InputItem], options: dict) -> None:
    if options.get("init") is not None and options.get("cells") is not None:
        raise ConfigError("--init and --cells: give one (a mesh to start from, or a foam of N cells)")
    if options.get("cells") is not None and options["cells"] < 1:
        raise ConfigError(f"--cells {options['cells']}: must be at least 1")
    if options.get("init") is not None and len(items) > 1:
        raise ConfigError("--init: with several inputs, give each its init in a CSV input list (column init)")


SPEC = MethodSpec(
    CONFIG,
    make_job,
    check_inputs,
    input_options={"init": Path, "cells": int, "psf": Path},
)


@with_shared_options
def mesh_fit(
    arguments: Arguments,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init", help="Initial mesh (.obj, .ply, .rec; default: a sphere fitted to the stack's bright region)."
        ),
    ] = None,
    cells: Annotated[
        int | None,
        typer.Option("--cells", help="Start from a foam of N cells (one multi-material mesh, written as .rec)."),
    ] = None,
    psf: Annotated[
        Path | None,
        typer.Option(
            "--psf",
            help="A measured PSF: a bead stack (TIFF) at the image's voxel size, used instead of fitting a Gaussian.",
        ),
    ] = None,
    voxel_size: VoxelSize = None,
    shared: SharedOptions = SharedOptions(),
) -> None:
    """Infer cell surface meshes and the microscope's PSF from a 3D fluorescence stack (deltaMic)."""
    options = {"init": init, "cells": cells, "psf": psf, "voxel_size": parse_voxel_size(voxel_size)}
    raise typer.Exit(run_method(SPEC, arguments, shared, [], options))


def synth_mesh(
    mesh: Annotated[Path, typer.Argument(help="A mesh (.obj, .ply, .off, .stl, .rec).", show_default=False)],
    size: Annotated[int, typer.Option("--size", min=16, help="Stack size in voxels (a cube).")] = 64,
    sigma: Annotated[float, typer.Option("--sigma", min=0.1, help="Gaussian PSF standard deviation, voxels.")] = 2.0,
    noise: Annotated[float, typer.Option("--noise", min=0.0, help="Gaussian noise, relative to the peak.")] = 0.05,
    copies: Annotated[
        int,
        typer.Option(
            "--copies",
            min=1,
            max=64,
            help="Copies of the mesh side by side, each randomly turned (a cluster of 2 x 4 cells from cell4.rec).",
        ),
    ] = 1,
    seed: SynthSeed = 0,
    out: SynthOut = Path("synth-mesh"),
) -> None:
    """A noisy fluorescence stack of a mesh (scaled into the box) through a Gaussian PSF, with the
    placed mesh and the PSF as ground truth."""
    from invrender.core.geometry.meshes import read_mesh
    from invrender.methods.mesh_fit.synth import write_mesh_dataset

    paths = write_mesh_dataset(read_mesh(mesh), mesh.stem, out, size, sigma, noise, seed, copies)
    typer.echo(f"wrote {', '.join(p.name for p in paths)} to {out}", err=True)
