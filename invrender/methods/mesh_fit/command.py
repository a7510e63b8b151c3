"""`invrender mesh-fit`: jobs, outputs and the command line of the method."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError
from invrender.core.calibration import Calibration, convert, read_calibration
from invrender.core.figures import loss_figure, write_figure
from invrender.core.geometry.meshes import cell_mesh_paths, read_mesh, write_cell_meshes, write_mesh
from invrender.core.io import (
    CHANNEL_AXES,
    InputError,
    expect_axes,
    read_axes_image,
    read_tiff_axes,
    write_json,
    write_tiff,
)
from invrender.core.optim.loss_log import LossLog
from invrender.inputs import InputItem, InputOption
from invrender.method import JobContext, MethodSpec, finish_fit
from invrender.methods.mesh_fit.api import CONFIG, STACK_AXES, fit_with_config
from invrender.methods.mesh_fit.slices import mesh_slices
from invrender.options import Arguments, CommandRun, SynthOut, SynthSeed, with_shared_options
from invrender.run import run_method
from invrender.runner import Job, StepCallback


def output_paths(out: Path, image: Path, n_cells: int = 0) -> dict[str, Path]:
    """What a job writes: the mesh as `.mesh.ply`, or a foam of `n_cells` cells as `.mesh.rec` with one
    PLY per cell beside it (`.mesh.cell<N>.ply`, for viewers that do not read `.rec`)."""
    stem = image.name.removesuffix(".tiff").removesuffix(".tif")
    mesh = out / f"{stem}.mesh.{'rec' if n_cells else 'ply'}"
    cells = {f"cell{cell}": path for cell, path in enumerate(cell_mesh_paths(mesh, n_cells), start=1)}
    return {
        "mesh": mesh,
        **cells,
        "psf": out / f"{stem}.psf.json",
        "render": out / f"{stem}.render.tif",
        "loss": out / f"{stem}.loss.png",
        "slices": out / f"{stem}.slices.png",
        "metrics": out / f"{stem}.metrics.json",  # written last: marks a complete output set
    }


def read_stack(path: Path, reading: dict) -> np.ndarray:
    """A z-stack (ZYX) from a TIFF, with `reading`'s `channel` and `axes` (`--channel`, `--axes`);
    a 3D array whose file does not name its axes is taken as one."""
    image = read_axes_image(path, channel=reading.get("channel"), axes=reading.get("axes"))
    return expect_axes(image, path, STACK_AXES, STACK_AXES, "--").array


def read_bead(path: Path, image: Calibration, channel: int | None = None) -> np.ndarray:
    """A measured PSF's bead stack (of `channel`, the image's, if it has several), checked to have the
    image's voxel size when its file records one (in the image's unit, when both name theirs)."""
    several = set(read_tiff_axes(path)) & set(CHANNEL_AXES)  # a bead file of one channel has no other to pick
    bead = read_stack(path, {"channel": channel if several else None})
    recorded = read_calibration(path, "ZYX")
    if recorded is None:
        return bead
    sizes, unit = recorded.sizes, recorded.unit
    if unit is not None and image.unit is not None:
        sizes, unit = convert(sizes, unit, image.unit), image.unit
    if not np.allclose(sizes, image.sizes, rtol=1e-3):
        given, expected = _with_unit(sizes, unit), _with_unit(image.sizes, image.unit)
        raise InputError(path, f"bead stack voxel size {given} differs from the image's {expected}; resample it first")
    return bead


def _with_unit(sizes: tuple[float, ...], unit: str | None) -> str:
    return ",".join(f"{s:g}" for s in sizes) + ("" if unit is None else f" {unit}")


def stack_calibration(path: Path, given: tuple[float, float, float] | None) -> Calibration:
    """The voxel size (z, y, x) of a stack and its unit: `given` (`--voxel-size`, in micrometres),
    else the file's in its own unit (None when the file names none), else 1 voxel; InputError for a
    recorded size that is not positive."""
    if given is not None:
        return Calibration(tuple(given), "µm")
    recorded = read_calibration(path, "ZYX")
    if recorded is None:
        return Calibration((1.0, 1.0, 1.0), None)
    if min(recorded.sizes) <= 0:
        raise InputError(
            path, f"voxel size {recorded.sizes} in the file's metadata is not positive; give --voxel-size z,y,x"
        )
    return recorded


def fit_file(image_path: Path, cfg: DictConfig, context: JobContext, on_step: StepCallback) -> dict:
    """Read the stack (with the options `channel` and `axes`), the init mesh (`init`) and the bead
    stack (`psf`), fit them (`fit_with_config`) and write the outputs into `context.out`. The voxel
    size and its unit are `stack_calibration`'s; the outputs are in that unit."""
    options, out = context.options, context.out
    init_path, psf_path = options.get("init"), options.get("psf")
    stack = read_stack(image_path, options)
    calibration = stack_calibration(image_path, options.get("voxel_size"))
    spacing, unit = calibration.sizes, calibration.unit
    init = None if init_path is None else read_mesh(init_path)
    bead = None if psf_path is None else read_bead(psf_path, calibration, options.get("channel"))
    log = LossLog(on_step)  # every step's loss, for the loss figure
    cells, device, seed = options.get("cells"), context.device, context.seed
    fitted = fit_with_config(
        stack, spacing, init, cells, bead, cfg, device, seed, log, str(image_path), str(init_path), str(psf_path)
    )

    # Everything the JSON files say is computed before the first file is written.
    foam = fitted.mesh.materials is not None
    paths = output_paths(out, image_path, fitted.mesh.n_cells if foam else 0)
    scale = {"unit": unit, "voxel_size_zyx": spacing}  # unit None: the file names none (voxels)
    if fitted.covariance is None:
        psf_record = {"kind": "measured", "file": str(psf_path), **scale}
    else:
        psf_record = {
            "kind": "gaussian",
            "covariance_xyz": fitted.covariance,
            "sigmas": fitted.sigmas,
            "axes": fitted.axes,
            **scale,
        }
    result = {
        "loss": fitted.metrics["final_losses"].get("intensity_weighted_mse"),
        "ssim": fitted.metrics["ssim"],
        "psnr": fitted.metrics["psnr"],
        "psf_sigmas": fitted.sigmas,
        **scale,
    }
    write_mesh(paths["mesh"], fitted.mesh)
    if foam:
        write_cell_meshes(paths["mesh"], fitted.mesh)
    write_json(paths["psf"], psf_record)
    write_tiff(paths["render"], fitted.render, spacing, axes="ZYX", unit=unit or "pixel")
    write_figure(paths["loss"], loss_figure(log, f"{image_path.name}: shape loss at every step"))
    write_figure(paths["slices"], mesh_slices(stack, fitted.render, spacing, fitted.mesh, image_path.name))
    return finish_fit(paths, fitted.metrics, result, fitted.phases, fitted.warning)


def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
    image = item.path

    def work(on_step: StepCallback) -> dict:
        return fit_file(image, cfg, context, on_step)

    return Job(str(image), [output_paths(context.out, image)["metrics"]], work)


def check_inputs(items: list[InputItem], options: dict) -> None:
    if options.get("init") is not None and options.get("cells") is not None:
        raise ConfigError("--init and --cells: give one (a mesh to start from, or a foam of N cells)")
    if options.get("cells") is not None and options["cells"] < 1:
        raise ConfigError(f"--cells {options['cells']}: must be at least 1")
    if options.get("init") is not None and len(items) > 1:
        raise ConfigError("--init: with several inputs, give each its init in a CSV input list (column init)")


#: The options that a CSV input list may also set per input, in a column of that name.
INPUT_OPTIONS = {
    "init": InputOption(
        Path, "Initial mesh (.obj, .ply, .rec; default: a sphere fitted to the stack's bright region)."
    ),
    "cells": InputOption(int, "Start from a foam of N cells (one multi-material mesh, written as .rec)."),
    "psf": InputOption(
        Path, "A measured PSF: a bead stack (TIFF) at the image's voxel size, used instead of fitting a Gaussian."
    ),
}

SPEC = MethodSpec(CONFIG, make_job, check_inputs, input_options=INPUT_OPTIONS)


@with_shared_options(CONFIG, reading=("channel", "axes", "voxel_size"), per_input=SPEC.input_options)
def mesh_fit(arguments: Arguments, *, run: CommandRun) -> None:
    """Infer cell surface meshes and the microscope's PSF from a 3D fluorescence stack (deltaMic)."""
    raise typer.Exit(run_method(SPEC, arguments, run))


def synth_mesh(
    mesh: Annotated[Path, typer.Argument(help="A mesh (.obj, .ply, .off, .stl, .rec).", show_default=False)],
    size: Annotated[int, typer.Option("--size", min=16, help="Stack size in voxels (a cube).")] = 64,
    sigma: Annotated[float, typer.Option("--sigma", min=0.1, help="Gaussian PSF standard deviation, voxels.")] = 2.0,
    noise: Annotated[float, typer.Option("--noise", min=0.0, help="Gaussian noise, relative to the peak.")] = 0.05,
    copies: Annotated[
        int, typer.Option("--copies", min=1, max=64, help="Copies side by side, each turned at random.")
    ] = 1,
    seed: SynthSeed = 0,
    out: SynthOut = None,
) -> None:
    """A noisy fluorescence stack of a mesh (scaled into the box) through a Gaussian PSF, with the
    placed mesh and the PSF as ground truth. `--copies 2` of a foam of 4 cells (cell4.rec, in the
    shared sample data) gives a cluster of 8 cells, bench/mesh_fit.py's set at size."""
    from invrender.core.geometry.meshes import read_mesh
    from invrender.methods.mesh_fit.synth import write_mesh_dataset

    paths = write_mesh_dataset(read_mesh(mesh), mesh.stem, out, size, sigma, noise, seed, copies)
    typer.echo(f"wrote {', '.join(p.name for p in paths)} to {out}", err=True)
