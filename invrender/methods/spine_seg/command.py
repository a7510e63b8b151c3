"""`invrender spine-seg`: jobs, outputs and the command line of the method.

An input is a CT: NIfTI (`.nii`, `.nii.gz`), a DICOM series folder, or a 3D TIFF (its voxel size
from the file or `--voxel-size`). Outputs in `--out`, named after the input's stem:
`<stem>.labels.nii.gz` (on the input's grid and affine, VerSe codes; `<stem>.labels.tif`, z y x in the
TIFF's unit, for a TIFF, so that it lies over it in Fiji and napari), `<stem>.<C1..L6>.ply` (one
mesh per vertebra, world mm in RAS, said in the header as `comment SPACE=RAS` for 3D Slicer, the
template's vertex order), `<stem>.slices.png` (mid-sagittal and
coronal slices with the contours and the vertebrae's names), `<stem>.loss.png` (the loss at every step,
the phases marked) and `<stem>.metrics.json` (written last: it marks a complete set;
Dice per label when `--gt` is given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError
from invrender.core.figures import loss_figure, write_figure
from invrender.core.geometry.meshes import write_mesh
from invrender.core.optim.loss_log import LossLog
from invrender.core.volumes import (
    CENTROID_SPACES,
    NIFTI_SUFFIXES,
    check_same_grid,
    grid_suffix,
    read_centroids,
    read_label_volume,
    read_volume,
    vertebra_name,
    write_on_grid,
)
from invrender.inputs import InputItem, InputOption
from invrender.method import JobContext, MethodSpec, finish_fit
from invrender.methods.spine_seg.api import CONFIG, check_ct, segment_with_config
from invrender.methods.spine_seg.slices import slice_figure
from invrender.options import Arguments, CommandRun, SynthOut, SynthSeed, with_shared_options
from invrender.run import run_method
from invrender.runner import Job, StepCallback


def input_stem(path: Path) -> str:
    name = path.name
    for suffix in (*NIFTI_SUFFIXES, ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_paths(out: Path, ct: Path, labels: list[int]) -> dict[str, Path]:
    """What a job writes; the last entry is written last and marks a complete set."""
    stem = input_stem(ct)
    meshes = {f"mesh_{label}": out / f"{stem}.{vertebra_name(label)}.ply" for label in labels}
    return {
        "labels": out / f"{stem}.labels{grid_suffix(ct)}",
        **meshes,
        "slices": out / f"{stem}.slices.png",
        "loss": out / f"{stem}.loss.png",
        "metrics": out / f"{stem}.metrics.json",
    }


def segment_file(
    ct_path: Path,
    centroids_path: Path,
    space: str,
    gt_path: Path | None,
    voxel_size,
    out: Path,
    cfg: DictConfig,
    seed: int,
    on_step: StepCallback,
) -> dict:
    volume = read_volume(ct_path, voxel_size)
    check_ct(volume)
    centroids = read_centroids(centroids_path, volume, space)
    truth = None
    if gt_path is not None:
        truth = read_label_volume(gt_path)
        check_same_grid(volume, truth, gt_path)
    truth_labels = None if truth is None else truth.data
    log = LossLog(on_step)  # every step's loss, for the loss figure
    segmented = segment_with_config(volume, centroids, truth_labels, cfg, seed, log, str(centroids_path))

    paths = output_paths(out, ct_path, list(segmented.meshes))
    write_on_grid(paths["labels"], segmented.labels, volume)
    for label, mesh in segmented.meshes.items():
        write_mesh(paths[f"mesh_{label}"], mesh, space="RAS")  # NIfTI's world frame, said for 3D Slicer
    chain = np.stack([centroids[label] for label in segmented.meshes])
    write_figure(paths["slices"], slice_figure(volume, segmented.labels, chain, truth_labels, ct_path.name))
    write_figure(paths["loss"], loss_figure(log, f"{ct_path.name}: loss at every step"))
    metrics = segmented.metrics
    result = {"loss": metrics["final_losses"].get("appearance_l1"), "vertebrae": len(segmented.meshes)}
    if truth is not None:
        result["mean_dice"] = metrics["mean_dice"]
    return finish_fit(paths, metrics, result, segmented.phases, segmented.warning)


def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
    centroids = context.options.get("centroids")
    if centroids is None:
        raise ConfigError(
            f"{item.source or item.path}: no --centroids (give them, or a centroids column in a CSV input list)"
        )
    gt, space, voxel_size = (
        context.options.get("gt"),
        context.options.get("centroid_space", "auto"),
        context.options.get("voxel_size"),
    )

    def work(on_step: StepCallback) -> dict:
        return segment_file(item.path, centroids, space, gt, voxel_size, context.out, cfg, context.seed, on_step)

    paths = output_paths(context.out, item.path, [])  # the meshes' names depend on the centroids, read by the job
    return Job(str(item.path), [paths["labels"], paths["slices"], paths["metrics"]], work)


def check_inputs(items: list[InputItem], options: dict) -> None:
    if options.get("centroid_space") not in CENTROID_SPACES:
        raise ConfigError(
            f"--centroid-space {options.get('centroid_space')!r}: expected one of {', '.join(CENTROID_SPACES)}"
        )
    for key in ("centroids", "gt"):
        if options.get(key) is not None and len(items) > 1:
            raise ConfigError(f"--{key}: with several CTs, give each its own in a CSV input list (column {key})")


#: The options that a CSV input list may also set per input, in a column of that name.
INPUT_OPTIONS = {
    "centroids": InputOption(Path, "Vertebral body centroids: VerSe JSON, or a CSV/text list 'label, x, y, z'."),
    "gt": InputOption(Path, "A vertebra label mask on the CT's grid: Dice per label in <stem>.metrics.json."),
}

SPEC = MethodSpec(
    CONFIG,
    make_job,
    check_inputs,
    input_suffixes=(*NIFTI_SUFFIXES, ".tif", ".tiff"),
    input_options=INPUT_OPTIONS,
    keep_folders=True,
)


@with_shared_options(CONFIG, reading=("voxel_size",), per_input=SPEC.input_options)
def spine_seg(
    arguments: Arguments,
    centroid_space: Annotated[
        str, typer.Option("--centroid-space", help="auto (VerSe JSON: voxels) | voxel | world (mm) for a plain list.")
    ] = "auto",
    *,
    run: CommandRun,
) -> None:
    """Label every vertebra of a spine CT without training: fit a deformable template mesh per
    vertebra with a learned appearance (Kim and Park). Folders are read as DICOM series."""
    raise typer.Exit(run_method(SPEC, arguments, run, {"centroid_space": centroid_space}))


def synth_ct(
    labels: Annotated[
        Path, typer.Option("--labels", help="Vertebra label mask (NIfTI, VerSe labels).", show_default=False)
    ],
    out: SynthOut = None,
    centroids: Annotated[
        Path | None,
        typer.Option(
            "--centroids",
            help="VerSe centroid JSON of the mask (moved with it); default: the deformed labels' centroids.",
        ),
    ] = None,
    levels: Annotated[
        str | None,
        typer.Option(
            "--levels",
            metavar="A-B",
            help="Field of view: the labels A-B (inclusive) plus 20 mm, e.g. 20-24; default all.",
        ),
    ] = None,
    spacing: Annotated[
        str,
        typer.Option(
            "--spacing",
            metavar="MM|X,Y,Z",
            help="Voxel size, mm: one number (isotropic) or x,y,z along R-L, A-P, S-I, e.g. 0.7,0.7,2.5.",
        ),
    ] = "1",
    orientation: Annotated[
        str | None,
        typer.Option(
            "--orientation",
            metavar="CODES",
            help="Axis codes of the stored grid, e.g. LAS or PIR; default: the mask's.",
        ),
    ] = None,
    tilt: Annotated[
        float,
        typer.Option(
            "--tilt", min=0.0, max=45.0, help="Degrees of rotation of the spine about an axis in the axial plane."
        ),
    ] = 0.0,
    scale: Annotated[
        float,
        typer.Option(
            "--scale", min=0.5, max=2.0, help="Size of the person against the mask's (vertebrae and their spacing)."
        ),
    ] = 1.0,
    distractors: Annotated[
        bool, typer.Option("--distractors", help="Add ribs, the aorta and kidneys with contrast, and the lungs.")
    ] = False,
    deform: Annotated[
        float,
        typer.Option(
            "--deform",
            min=0.0,
            max=10.0,
            help="Largest displacement of the smooth deformation, mm (0: none, no rigid motion either).",
        ),
    ] = 4.0,
    seed: SynthSeed = 0,
) -> None:
    """A CT-like volume (HU) of the vertebrae in a label mask, through a random smooth deformation,
    with the deformed labels and their centroids: <name>_ct.nii.gz, <name>_msk.nii.gz, <name>_ctd.json."""
    from invrender.methods.spine_seg.synth import axis_directions, parse_spacing, write_ct_dataset

    bounds = None
    if levels is not None:
        parts = levels.split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or int(parts[0]) > int(parts[1]):
            raise typer.BadParameter(
                f"expected A-B with labels A <= B, e.g. 20-24, got {levels!r}", param_hint="--levels"
            )
        bounds = (int(parts[0]), int(parts[1]))
    try:
        sizes = parse_spacing([float(v) for v in spacing.split(",")])
    except ValueError:
        raise typer.BadParameter(
            f"{spacing!r} is not one or three positive numbers (mm)", param_hint="--spacing"
        ) from None
    if sizes.min() < 0.25:
        raise typer.BadParameter(f"{spacing!r}: every voxel size must be at least 0.25 mm", param_hint="--spacing")
    if orientation is not None:
        try:
            axis_directions(orientation)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--orientation") from None
    try:
        summary = write_ct_dataset(
            labels,
            out,
            centroids,
            levels=bounds,
            spacing=tuple(sizes),
            deform=deform,
            seed=seed,
            orientation=orientation,
            tilt=tilt,
            scale=scale,
            distractors=distractors,
        )
    except ValueError as err:  # no label in the mask, or none in --levels
        raise typer.BadParameter(str(err), param_hint="--levels" if bounds else "--labels") from None
    shape = "x".join(map(str, summary["shape"]))
    size = "x".join(f"{v:g}" for v in summary["spacing"])
    typer.echo(
        f"wrote {summary['name']}_ct/_msk/_ctd ({shape} {summary['orientation']} at {size} mm, labels "
        f"{summary['labels']}, "
        f"{len(summary['centroids'])} centroid(s), max displacement {summary['max_displacement']:.1f} mm) to {out}",
        err=True,
    )
