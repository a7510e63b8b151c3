"""`invrender spline-refine`: jobs, outputs and the command line of the method."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError
from invrender.core.calibration import pixel_size_record
from invrender.core.figures import INIT, RESULT, SUSPECT, Layer, image_overlay, loss_figure, write_figure
from invrender.core.geometry.spline_io import read_splines
from invrender.core.io import InputError, expect_axes, finite_or_none, read_axes_image, write_json, write_tiff
from invrender.core.optim.loss_log import LossLog
from invrender.core.roi import Outline, write_roi_zip
from invrender.inputs import InputItem, InputOption
from invrender.method import JobContext, MethodSpec
from invrender.methods.spline_refine.api import CONFIG, IMAGE_AXES, UNLABELLED_AXES, refine_with_config
from invrender.methods.spline_refine.schema import METHODS
from invrender.options import Arguments, CommandRun, ConfigOption, SynthOut, SynthSeed, with_shared_options
from invrender.run import run_method
from invrender.runner import Job, StepCallback

INIT_SUFFIXES = (".json", ".npy")


def find_init(image: Path, init: Path | None) -> Path:
    """The init file of an input image: `--init FILE`, else `<stem>.json|.npy` in `--init DIR`
    or, without `--init`, beside the image."""
    if init is not None and not init.is_dir():
        return init
    if not image.is_file():  # say so, rather than that no init was found beside it
        raise InputError(image, "file not found")
    folder = init if init is not None else image.parent
    for suffix in INIT_SUFFIXES:
        candidate = folder / f"{image.stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise InputError(image, f"no init splines found: expected {image.stem}.json or {image.stem}.npy in {folder}")


def output_paths(out: Path, image: Path, n_frames: int, method: str) -> dict[str, Path]:
    """Output files of one input; a stack (n_frames > 1) gets one overlay per frame."""
    paths = {"splines": out / f"{image.stem}.splines.json", "rois": rois_path(out, image)}
    if method == "render":
        paths["render"] = out / f"{image.stem}.render.tif"
        paths["loss"] = out / f"{image.stem}.loss.png"
    if n_frames == 1:
        paths["overlay"] = out / f"{image.stem}.overlay.png"
    else:
        for f in range(n_frames):
            paths[f"overlay{f}"] = out / f"{image.stem}.overlay.{f:04d}.png"
    return paths


def rois_path(out: Path, image: Path) -> Path:
    """The refined splines as ImageJ polyline ROIs (`core.roi`), each at its frame in a stack."""
    return out / f"{image.stem}.rois.zip"


def refine_file(image_path: Path, init_path: Path, cfg: DictConfig, context: JobContext, on_step: StepCallback) -> dict:
    """Read the image (with the options `channel` and `axes`: `--channel`, `--axes`) and its init,
    refine them (`refine_with_config`), then write all outputs into `context.out` (the splines JSON
    last). The job's result records the pixel size and its unit (`pixel_size_record`): the option
    `pixel_size` (`--pixel-size`), else the file's."""
    reading = context.options
    read = read_axes_image(image_path, channel=reading.get("channel"), axes=reading.get("axes"))
    image = expect_axes(read, image_path, IMAGE_AXES, UNLABELLED_AXES, "--").array
    inits = read_splines(init_path)
    log = LossLog(on_step)  # every step's loss, for the loss figure
    fitted = refine_with_config(image, inits, cfg, context.device, context.seed, log, str(init_path))
    out = context.out

    stack = image if image.ndim == 3 else image[None]
    paths = output_paths(out, image_path, len(stack), fitted.method)
    in_stack = image.ndim == 3  # a stack is a time-lapse: its render's frames are T in Fiji, its ROIs per frame
    if fitted.render is not None:
        write_tiff(paths["render"], fitted.render, axes="TYX" if in_stack else "YX")
    for f, (frame_image, refined) in enumerate(zip(stack, fitted.splines)):
        key = "overlay" if "overlay" in paths else f"overlay{f}"
        layers = [Layer(INIT, [r["points"] for r in inits[f]])] if f < len(inits) else []  # a propagated frame: none
        for style, suspect in ((RESULT, False), (SUSPECT, True)):
            curves = [r["points"] for r in refined if bool(r.get("suspect")) == suspect]
            if curves:
                layers.append(Layer(style, curves))
        ids = [(r["points"][0], str(r["id"]), (SUSPECT if r.get("suspect") else RESULT).colour) for r in refined]
        title = image_path.name if len(stack) == 1 else f"{image_path.name}: frame {f}"
        write_figure(paths[key], image_overlay(frame_image, layers, title, ids))
    if "loss" in paths:
        write_figure(paths["loss"], loss_figure(log, f"{image_path.name}: loss at every step"))
    outlines = [
        Outline(record["points"], f"spline {record['id']}", f if in_stack else None)
        for f, refined in enumerate(fitted.splines)
        for record in refined
    ]
    write_roi_zip(paths["rois"], outlines, "polyline")
    write_json(paths["splines"], fitted.to_json(image_path.name))
    result: dict = {
        "frames": len(stack),
        **pixel_size_record(image_path, reading.get("pixel_size")),
        "splines": sum(len(r) for r in fitted.splines),
        "outputs": [str(p) for p in paths.values()],
    }
    if fitted.method == "render":
        result["loss"] = finite_or_none(np.mean(fitted.frame_losses))
        result["phases"] = [[p.__dict__ for p in phases] for phases in fitted.phases]
    if fitted.refitted is not None:
        result.update(refitted=fitted.refitted, lost=fitted.lost)
    if fitted.warnings:  # the runner prints it and records it: the outputs are a diverged fit's last finite state
        result["warning"] = "; ".join(fitted.warnings)
    return result


def check_inputs(items: list[InputItem], options: dict) -> None:
    init = options.get("init")
    if init is not None and len(items) > 1 and not init.is_dir():
        raise ConfigError(f"--init {init}: with several inputs, --init must be a folder holding <stem>.json per input")


def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
    image = item.path

    def work(on_step: StepCallback) -> dict:
        init = find_init(image, context.options.get("init"))
        return refine_file(image, init, cfg, context, on_step)

    # The splines JSON is written last, so its presence marks a complete output set.
    return Job(str(image), [rois_path(context.out, image), context.out / f"{image.stem}.splines.json"], work)


#: The options that a CSV input list may also set per input, in a column of that name.
INPUT_OPTIONS = {
    "init": InputOption(
        Path,
        "Init splines: a .json/.npy file, or a folder with <stem>.json per input (default: beside each input).",
    )
}

SPEC = MethodSpec(CONFIG, make_job, check_inputs, input_options=INPUT_OPTIONS)


#: The options that set a config value.
SETTING = {
    "method": ConfigOption(
        "method", str, "render (differentiable rendering, default) | active-contour (baseline).", METHODS
    ),
    "propagate": ConfigOption(
        "video.propagate",
        bool,
        "Stacks (time-lapses): each frame starts from the previous frame's result with a short schedule "
        "(video.phases); a body lost on the way is found again from that frame's init, if the init file has one "
        "per frame (it may hold the first frame's only).",
    ),
}


@with_shared_options(CONFIG, reading=("channel", "axes", "pixel_size"), per_input=SPEC.input_options, setting=SETTING)
def spline_refine(arguments: Arguments, *, run: CommandRun) -> None:
    """Refine splines of slender bodies (e.g. C. elegans) to sub-pixel accuracy by rendering them."""
    raise typer.Exit(run_method(SPEC, arguments, run))


def synth_splines(
    bodies: Annotated[int, typer.Option("--bodies", "-n", min=1, help="Bodies per frame.")] = 1,
    frames: Annotated[int, typer.Option("--frames", "-f", min=1, help="Number of frames.")] = 8,
    size: Annotated[int, typer.Option("--size", min=32, help="Frame size in pixels.")] = 128,
    body_size: Annotated[
        int | None,
        typer.Option(
            "--body-size",
            min=32,
            help="Bodies as long and wide as in a frame of this size (default: --size); smaller: a plate.",
        ),
    ] = None,
    crossing: Annotated[
        float,
        typer.Option("--crossing", min=0.0, max=1.0, help="Fraction of the bodies that cross an earlier one."),
    ] = 1.0,
    postures: Annotated[
        str,
        typer.Option(
            "--postures",
            help="waves: gently curved bodies (Zdyb et al.'s benchmark); eigenworm: real C. elegans postures "
            "with omega turns and coils, 70-120 px long at --size 256.",
        ),
    ] = "waves",
    seed: SynthSeed = 0,
    out: SynthOut = None,
) -> None:
    """Frames of overlapping slender bodies with labels and perturbed inits (rotation, displacement,
    scaling, PCA, straight lines), as in Zdyb et al.'s robustness study; with --body-size and
    --crossing, whole plates of mostly separate bodies; with --postures eigenworm, real worm postures."""
    from invrender.methods.spline_refine.synth import POSTURES, write_spline_dataset

    if body_size is not None and body_size > size:
        raise ConfigError(f"--body-size {body_size}: must be at most --size {size}")
    if postures not in POSTURES:
        raise ConfigError(f"--postures {postures!r}: expected one of {', '.join(POSTURES)}")
    layout = {"body_size": body_size, "crossing": crossing, "postures": postures}
    write_spline_dataset(out, bodies=bodies, frames=frames, size=size, seed=seed, **layout)
    typer.echo(f"wrote {frames} frame(s) of {bodies} bodies to {out}", err=True)


def synth_splines_movie(
    bodies: Annotated[int, typer.Option("--bodies", "-n", min=1, help="Bodies in the movie.")] = 3,
    frames: Annotated[int, typer.Option("--frames", "-f", min=2, help="Number of frames.")] = 100,
    size: Annotated[int, typer.Option("--size", min=64, help="Frame size in pixels.")] = 128,
    seed: SynthSeed = 0,
    out: SynthOut = None,
) -> None:
    """A time-lapse of crawling bodies (movie.tif) with labels, a detector's init for every frame and
    the first frame's init alone, and a few dropped frames where the bodies jump."""
    from invrender.methods.spline_refine.synth_movie import write_spline_movie

    write_spline_movie(out, bodies=bodies, frames=frames, size=size, seed=seed)
    typer.echo(f"wrote a {frames}-frame movie of {bodies} bodies to {out}", err=True)
