"""`invrender spine-seg`: jobs, outputs and the command line of the method.

An input is a CT: NIfTI (`.nii`, `.nii.gz`), a DICOM series folder, or a 3D TIFF with
`--voxel-size`. Outputs in `--out`, named after the input's stem:
`<stem>.labels.nii.gz` (on the input's grid and affine, VerSe codes), `<stem>.<C1..L6>.ply` (one
mesh per vertebra, world mm, the template's vertex order), `<stem>.slices.png` (mid-sagittal and
coronal slices with the contours) and `<stem>.metrics.json` (written last: it marks a complete set;
Dice per label when `--gt` is given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError, check_config_values
from invrender.core.geometry.meshes import Mesh, write_mesh
from invrender.core.io import InputError, write_png
from invrender.core.metrics import dice_per_label
from invrender.core.volumes import (
    NIFTI_SUFFIXES,
    VERTEBRA_NAMES,
    check_same_grid,
    check_voxel_size,
    read_centroids,
    read_label_volume,
    read_volume,
    vertebra_name,
    write_nifti,
)
from invrender.inputs import InputItem, parse_voxel_size
from invrender.method import JobContext, MethodSpec, finish_fit
from invrender.methods.spine_seg.fit import QUANTITIES, fit_spine, label_volume
from invrender.methods.spine_seg.frames import chain_frames, cranial_order
from invrender.methods.spine_seg.schema import RULES
from invrender.methods.spine_seg.slices import slice_sheet
from invrender.methods.spine_seg.template import default_template_path, load_template
from invrender.options import Arguments, SharedOptions, SynthOut, SynthSeed, VoxelSize, with_shared_options
from invrender.run import run_method
from invrender.runner import Job, StepCallback

CENTROID_SPACES = ("auto", "voxel", "world")
#: Voxel sizes (mm) outside this range are no CT's but a header in another unit or a damaged one: the
#: fit low-passes the CT by Gaussians of a few mm, (mm / voxel size) voxels wide, which at 1e-6 mm
#: take hours; beyond it a vertebra is a voxel or two.
CT_VOXEL_MM = (0.05, 20.0)
#: Two centroids closer than this (mm) are one point given twice: no vertebra is that small.
MIN_CENTROID_GAP_MM = 1.0


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
        "labels": out / f"{stem}.labels.nii.gz",
        **meshes,
        "slices": out / f"{stem}.slices.png",
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
    check_voxel_size(volume, *CT_VOXEL_MM, "a CT")
    centroids = read_centroids(centroids_path, volume, space)
    check_chain(centroids_path, centroids)
    truth = None
    if gt_path is not None:
        truth = read_label_volume(gt_path)
        check_same_grid(volume, truth, gt_path)
    template = load_template(Path(cfg.template) if cfg.template else default_template_path())
    fit = fit_spine(volume, centroids, template, cfg, seed, on_step)
    labels = label_volume(volume, fit)

    paths = output_paths(out, ct_path, fit.labels)
    write_nifti(paths["labels"], labels, volume)
    for label, vertices in zip(fit.labels, fit.vertices):
        write_mesh(paths[f"mesh_{label}"], Mesh(vertices, fit.faces))
    write_png(paths["slices"], slice_sheet(volume, labels, np.stack([centroids[label] for label in fit.labels])))
    final = fit.phases[-1].final if fit.phases else {}
    metrics = {
        "vertebrae": {vertebra_name(label): label for label in fit.labels},
        "final_losses": final,
        "steps": len(fit.losses),
        "voxels": {vertebra_name(label): int((labels == label).sum()) for label in fit.labels},
    }
    if truth is not None:
        dice = dice_per_label(labels, truth.data, fit.labels)
        metrics["dice"] = {vertebra_name(label): value for label, value in dice.items()}
        metrics["mean_dice"] = float(np.mean(list(dice.values())))
    if fit.placement is not None:
        metrics["placement"] = fit.placement.summary([vertebra_name(label) for label in fit.labels])
    result = {"loss": final.get("appearance_l1"), "vertebrae": len(fit.labels)}
    if truth is not None:
        result["mean_dice"] = metrics["mean_dice"]
    return finish_fit(paths, metrics, result, fit.phases, fit.warning)


def check_chain(path: Path, centroids: dict[int, np.ndarray]) -> None:
    """InputError naming the centroid file unless the centroids `{label: (3,) world mm}` make a chain
    that has vertebra frames (`frames.chain_frames`): at least two, no two at one point, and a spine
    axis that does not run front to back."""
    names = [f"{VERTEBRA_NAMES[label]} ({label})" for label in centroids]
    if len(centroids) < 2:
        raise InputError(path, f"a single centroid, {names[0]}: spine-seg needs at least two vertebrae")
    points = np.stack(list(centroids.values()))
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.diag(np.full(len(points), np.inf))
    a, b = np.unravel_index(np.argmin(gaps), gaps.shape)
    if gaps[a, b] < MIN_CENTROID_GAP_MM:
        raise InputError(
            path,
            f"the centroids of {names[a]} and {names[b]} are {gaps[a, b]:.3g} mm apart (less than "
            f"{MIN_CENTROID_GAP_MM:g} mm): one point given twice?",
        )
    try:
        chain_frames(np.stack([centroids[label] for label in sorted(centroids, key=cranial_order)]))
    except ValueError as err:
        raise InputError(path, f"no vertebra frames from these centroids: {err}") from None


def check_config(cfg: DictConfig, device) -> None:
    check_config_values(cfg, RULES)
    low, high = cfg.region.percentiles
    if low >= high:
        raise ConfigError(f"config region.percentiles [{low}, {high}]: the first must be below the second")
    if cfg.template:
        load_template(Path(cfg.template))  # an unusable template is bad input before any job starts


def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
    centroids = context.options.get("centroids")
    if centroids is None:
        raise ConfigError(f"{item.source}: no --centroids (give them, or a centroids column in a CSV input list)")
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


# CPU only: libigl's queries, the cost of a fit, run on the CPU.
SPEC = MethodSpec(
    "spine-seg",
    "spine_seg",
    make_job,
    check_config,
    check_inputs,
    input_suffixes=(*NIFTI_SUFFIXES, ".tif", ".tiff"),
    input_options={"centroids": Path, "gt": Path},
    keep_folders=True,
    cpu_only=True,
    quantities=QUANTITIES,
)


@with_shared_options
def spine_seg(
    arguments: Arguments,
    centroids: Annotated[
        Path | None,
        typer.Option("--centroids", help="Vertebral body centroids: VerSe JSON, or a CSV/text list 'label, x, y, z'."),
    ] = None,
    centroid_space: Annotated[
        str, typer.Option("--centroid-space", help="auto (VerSe JSON: voxels) | voxel | world (mm) for a plain list.")
    ] = "auto",
    gt: Annotated[
        Path | None,
        typer.Option("--gt", help="A vertebra label mask on the CT's grid: Dice per label in <stem>.metrics.json."),
    ] = None,
    voxel_size: VoxelSize = None,
    shared: SharedOptions = SharedOptions(),
) -> None:
    """Label every vertebra of a spine CT without training: fit a deformable template mesh per
    vertebra with a learned appearance (Kim and Park). Folders are read as DICOM series."""
    options = {
        "centroids": centroids,
        "centroid_space": centroid_space,
        "gt": gt,
        "voxel_size": parse_voxel_size(voxel_size),
    }
    raise typer.Exit(run_method(SPEC, arguments, shared, [], options))


def synth_ct(
    labels: Annotated[
        Path, typer.Option("--labels", help="Vertebra label mask (NIfTI, VerSe labels).", show_default=False)
    ],
    out: SynthOut = Path("synth-ct"),
    centroids: Annotated[
        Path | None,
        typer.Option(
            "--centroids",
            help="VerSe centroid JSON of the mask (moved with it); default: the deformed labels' centroids.",
        ),
    ] = None,
    levels: Annotated[
        str | None,
        typer.Option("--levels", help="Field of view: the labels A-B (inclusive) plus 20 mm, e.g. 20-24; default all."),
    ] = None,
    spacing: Annotated[
        str,
        typer.Option(
            "--spacing", help="Voxel size, mm: one number (isotropic) or x,y,z along R-L, A-P, S-I, e.g. 0.7,0.7,2.5."
        ),
    ] = "1",
    orientation: Annotated[
        str | None,
        typer.Option("--orientation", help="Axis codes of the stored grid, e.g. LAS or PIR; default: the mask's."),
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
