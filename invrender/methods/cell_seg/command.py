"""`invrender cell-seg`: jobs, outputs and the command line of the method.

An input is a Cell Tracking Challenge sequence folder (`t000.tif`, ...), a 2D+t stack or a single
2D image. A sequence or stack writes the CTC result layout into `--out` (`maskTTT.tif`,
`res_track.txt`), so one sequence goes to one output folder; a single image writes
`<stem>.labels.tif`. Both write a contour overlay per frame with the cells' labels, the loss at every
step (`<name>.loss.png`; a time-lapse also its tracks, `tracks.png`), the contours as ImageJ ROIs
(`<name>.rois.zip`) and `<name>.cells.json` (last, so that it marks a complete set), the fitted
contours, brightness and PSF of every frame.

`--stage` (config key `stage`) picks how a time-lapse is segmented: "1" fits every frame; "both"
fits a few frames (their masks go to `OUT/stage1/`), trains a U-Net on them (`OUT/stage2/`) and
segments every frame with it, linking the cells by overlap; "2" does the latter from the masks
already in `OUT/stage1/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError
from invrender.core.calibration import Calibration, pixel_size_record
from invrender.core.figures import loss_figure, write_figure
from invrender.core.io import InputError, atomic_path, read_json, read_tiff_axes, write_json
from invrender.core.optim.loss_log import LossLog
from invrender.core.roi import Outline, write_roi_zip
from invrender.inputs import InputItem
from invrender.method import JobContext, MethodSpec
from invrender.methods.cell_seg import stage2
from invrender.methods.cell_seg.api import CONFIG, CellSegResult, check_frames, segment_with_config
from invrender.methods.cell_seg.ctc import (
    Frames,
    label_frame_paths,
    read_frames,
    read_label_frames,
    write_label_frames,
    write_label_image,
    write_tracks,
)
from invrender.methods.cell_seg.figures import contour_overlay, tracks_figure
from invrender.options import Arguments, CommandRun, ConfigOption, SynthOut, SynthSeed, with_shared_options
from invrender.run import run_method
from invrender.runner import Job, StepCallback


def input_name(path: Path) -> str:
    return path.name.removesuffix(".tiff").removesuffix(".tif")


def stage1_folder(out: Path) -> Path:
    """Where `--stage both` writes the stage-1 masks of the training frames and `--stage 2` reads them."""
    return out / "stage1"


def output_paths(out: Path, path: Path, kind: str, stage: str = "1") -> dict[str, Path]:
    """What a job writes; the last entry is written last and marks a complete set."""
    name = input_name(path)
    # A time-lapse's labels are the CTC's 2D maskTTT.tif only: py-ctcmetrics takes every TIFF in the
    # result folder for a frame, so no TYX stack of them may go there.
    if kind == "image":
        return {
            "labels": out / f"{name}.labels.tif",
            "rois": out / f"{name}.rois.zip",
            "overlay": out / f"{name}.overlay.png",
            "loss_figure": out / f"{name}.loss.png",
            "cells": out / f"{name}.cells.json",
        }
    fitted = {"stage1": stage1_folder(out)} if stage == "both" else {}
    trained = {} if stage == "1" else {"network": out / "stage2" / "network.pt", "loss": out / "stage2" / "loss.csv"}
    return {
        **fitted,
        **trained,
        "rois": out / f"{name}.rois.zip",
        "overlays": out / "overlays",
        "tracks": out / "res_track.txt",
        "loss_figure": out / f"{name}.loss.png",
        "track_figure": out / "tracks.png",
        "cells": out / f"{name}.cells.json",
    }


def segment_file(path: Path, cfg: DictConfig, context: JobContext, on_step: StepCallback) -> dict:
    """One input at the stage `cfg.stage`: read it (with the options `channel` and `axes`, the
    command line's `--channel` and `--axes`), segment it (`segment_with_config`, what
    `invrender.segment_cells` runs) and write the result into `context.out` (the module docstring
    says what). The job's result records the pixel size and its unit (`pixel_size_record`): the
    option `pixel_size` (`--pixel-size`), else the input's own (a sequence's first frame's)."""
    reading, out = context.options, context.out
    stage = str(cfg.stage)
    frames = read_frames(path, reading.get("channel"), reading.get("axes"))
    check_frames(frames, stage)
    kind = "image" if frames.kind == "image" else "sequence"
    if kind == "sequence":
        claim_sequence_folder(out, path)
    masks = read_stage1_masks(stage1_folder(out)) if stage == "2" else None
    log = LossLog(on_step)  # every step's loss, for the loss figure
    result = segment_with_config(frames, cfg, context.device, context.seed, log, masks, str(stage1_folder(out)))
    first_file = path if not path.is_dir() else next(iter(label_frame_paths(path, "t").values()))
    scale = pixel_size_record(first_file, reading.get("pixel_size"))
    # The label images carry the file's own calibration, so that Fiji measures the cells in it;
    # `--pixel-size` names no unit (pixel_unit None), and is recorded in the records only.
    calibration = Calibration(scale["pixel_size"], scale["pixel_unit"]) if scale["pixel_unit"] else None
    return {**write_result(path, out, frames, result, cfg, log, calibration, scale), **scale}


def write_result(
    path: Path,
    out: Path,
    frames: Frames,
    result: CellSegResult,
    cfg: DictConfig,
    log: LossLog,
    calibration: Calibration | None,
    scale: dict,
) -> dict:
    """Write what cell-seg found in the input `path` (read as `frames`) into `out`, with the loss at
    every step that `log` kept, the label images with `calibration` (the input's pixel size, y x, and
    its unit; None: in pixels) and `<name>.cells.json` with `scale` (`pixel_size_record`: its points
    and areas stay in pixels, this converts them); returns the job's result for the manifest."""
    name = input_name(path)
    stage = result.stage
    kind = "image" if frames.kind == "image" else "sequence"
    paths = output_paths(out, path, kind, stage)
    if kind == "image":
        write_label_image(paths["labels"], result.labels[0], calibration)
        write_figure(paths["overlay"], contour_overlay(frames.images[0], result.records[0], name))
    else:
        if stage == "both":
            write_label_frames(
                stage1_folder(out), "mask", result.stage1_masks, result.train_frames, frames.digits, calibration
            )
        if stage != "1":
            stage2.save_network(paths["network"], result.network, cfg.stage2, result.train_frames)
            write_losses(paths["loss"], result.training_losses)
        write_sequence(out, paths, frames, result.labels, result.records, result.tracks, name, calibration)
    write_figure(paths["loss_figure"], loss_figure(log, f"{name}: loss at every step"))
    record = {
        "format": "invrender.cells",
        "layout": "ctc-sequence" if kind == "sequence" else "image",
        "version": 1,
        "input": str(path),
        "stage": stage,
        **scale,
    }
    summary = {
        "frames": len(frames.times),
        "cells": [len(r["cells"]) for r in result.records],
        "divisions": len(result.divisions),
        "tracks": len(result.tracks),
    }
    if stage == "1":
        summary |= {
            "dropped": sum(r["dropped"] for r in result.records),
            "added": sum(r["added"] for r in result.records),
        }
    else:
        record["stage2"] = stage2_record(result, stage1_folder(out), paths["network"])
        summary |= {"train_frames": result.train_frames, "loss": result.training_loss, "seconds": result.seconds}
    if result.warnings:
        summary["warning"] = "; ".join(result.warnings)  # a fit that diverged
    write_roi_zip(paths["rois"], contour_outlines(result.records, kind == "sequence"), "polygon")
    write_json(paths["cells"], {**record, "frames": result.records, "divisions": result.divisions})
    return {"outputs": [str(p) for p in paths.values()], **summary}


def contour_outlines(records: list[dict], time_lapse: bool) -> list[Outline]:
    """Every cell's contour as an ROI named by its label (its track's in a time-lapse), at its frame's
    index among the time-lapse's frames (the position Fiji gives it, counting from 1)."""
    return [
        Outline(cell["points"], f"cell {cell['label']}", index if time_lapse else None)
        for index, record in enumerate(records)
        for cell in record["cells"]
    ]


def stage2_record(result: CellSegResult, masks: Path, network: Path) -> dict:
    """What `<name>.cells.json` says of stage 2: the frames and masks that trained the network, where
    it is, how long it trained and its final loss, and the seconds of each part."""
    return {
        "train_frames": result.train_frames,
        "masks": str(masks),
        "network": str(network),
        "steps": len(result.training_losses),
        "final_loss": result.training_loss,
        "seconds": result.seconds,
    }


def write_sequence(
    out: Path,
    paths: dict[str, Path],
    frames: Frames,
    labels: np.ndarray,
    records: list[dict],
    tracks: np.ndarray,
    name: str,
    calibration: Calibration | None,
) -> None:
    """The CTC result layout of a time-lapse `name`: `maskTTT.tif` from labels (T, H, W) (with the
    input's `calibration`, if any), an overlay of
    the cells' outlines per frame, `res_track.txt` from tracks (n, 4) `L B E P` and their picture
    (`tracks.png`). Frames of an earlier run of this sequence that this run has not (a sequence with
    fewer frames now) are removed, so the folder holds one result."""
    written = write_label_frames(out, "mask", labels, frames.times, frames.digits, calibration)
    paths["overlays"].mkdir(parents=True, exist_ok=True)
    overlays = [paths["overlays"] / f"t{time:0{frames.digits}d}.png" for time in frames.times]
    for stale in {*out.glob("mask*.tif"), *paths["overlays"].glob("t*.png")} - {*written, *overlays}:
        stale.unlink()
    for overlay, image, record in zip(overlays, frames.images, records):
        write_figure(overlay, contour_overlay(image, record, name))
    write_figure(paths["track_figure"], tracks_figure(frames.images, records, tracks, name))
    write_tracks(paths["tracks"], tracks)


def claim_sequence_folder(out: Path, path: Path) -> None:
    """InputError unless `out` is free for the CTC layout of the time-lapse `path`: one sequence's
    result per folder (its `maskTTT.tif` have no name of their own), so another sequence's result
    there is neither overwritten in part nor mixed with this one."""
    own = f"{input_name(path)}.cells.json"
    for record_path in sorted(out.glob("*.cells.json")):
        if record_path.name == own:
            continue
        try:
            record = read_json(record_path)
            sequence = record.get("layout") == "ctc-sequence" or len(record.get("frames", [])) > 1
        except (InputError, AttributeError, TypeError):
            continue  # not a result of ours
        if sequence:
            raise InputError(
                path,
                f"{out} holds the result of another sequence ({record_path.name}): give each sequence its own --out",
            )


def read_stage1_masks(folder: Path) -> dict[int, np.ndarray]:
    """The stage-1 masks an earlier `--stage both` run wrote, by frame number; InputError (naming the
    folder or file) when there are none or one is unreadable (`segment_with_config` checks that they
    fit the time-lapse)."""
    if not folder.is_dir() or not any(folder.glob("mask*.tif")):
        raise InputError(folder, "no stage-1 masks maskTTT.tif here: run --stage both first (it writes them)")
    return read_label_frames(folder, "mask")


def write_losses(path: Path, losses: list[float]) -> None:
    """The training loss per step as CSV `step,loss`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(
            "step,loss\n" + "".join(f"{step},{loss:.6g}\n" for step, loss in enumerate(losses)), encoding="ascii"
        )


def is_time_lapse(path: Path, axes: str | None = None) -> bool:
    """A sequence folder, or a TIFF with a time axis: in `axes` (`--axes`) if given, else in the
    file's own; unreadable files count as images (their job reports them)."""
    if path.is_dir():
        return True
    try:
        return "T" in (axes or read_tiff_axes(path))
    except InputError:
        return False


def check_inputs(items: list[InputItem], options: dict) -> None:
    sequences = [item.path for item in items if is_time_lapse(item.path, options.get("axes"))]
    if sequences and len(items) > 1:
        raise ConfigError(
            f"{sequences[0]} is a time-lapse, which writes the CTC layout (maskTTT.tif, res_track.txt) into --out: "
            "run one time-lapse per --out folder"
        )


def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
    path = item.path
    kind = "sequence" if is_time_lapse(path, context.options.get("axes")) else "image"
    stage = str(cfg.stage)

    def work(on_step: StepCallback) -> dict:
        return segment_file(path, cfg, context, on_step)

    paths = output_paths(context.out, path, kind, stage)
    cells = paths["cells"]  # written last

    def finished() -> bool:
        """A complete result of the stage asked for (records from before stages count as stage 1)."""
        try:
            return paths["rois"].is_file() and cells.is_file() and str(read_json(cells).get("stage", "1")) == stage
        except (InputError, AttributeError):  # not our record: do it again
            return False

    return Job(str(path), [paths["rois"], cells], work, finished=finished)


SPEC = MethodSpec(CONFIG, make_job, check_inputs, keep_folders=True)


#: The option that sets a config value (the stage; checked with the config, schema.py).
SETTING = {
    "stage": ConfigOption(
        "stage",
        str,
        "1: fit every frame | both: fit a few frames, train a U-Net on them, segment every frame with it | "
        "2: train on the masks a `both` run left in OUT/stage1 (default: the config's `stage`, 1).",
    )
}


@with_shared_options(CONFIG, reading=("channel", "axes", "pixel_size"), setting=SETTING)
def cell_seg(arguments: Arguments, *, run: CommandRun) -> None:
    """Segment and track cells: every cell a star-convex contour fitted by differentiable rendering
    (CTC sequence folder -> maskTTT.tif + res_track.txt; single image -> <stem>.labels.tif)."""
    raise typer.Exit(run_method(SPEC, arguments, run))


def synth_cells(
    frames: Annotated[int, typer.Option("--frames", "-f", min=1, help="Number of frames.")] = 20,
    size: Annotated[int, typer.Option("--size", min=32, help="Frame size in pixels (square).")] = 256,
    cells: Annotated[int, typer.Option("--cells", "-n", min=1, help="Nuclei in the first frame.")] = 12,
    divisions: Annotated[
        int, typer.Option("--divisions", min=0, help="How many of them divide (each at its own frame).")
    ] = 4,
    seed: SynthSeed = 0,
    out: SynthOut = None,
) -> None:
    """A fluorescence time-lapse of moving, dividing nuclei with perfect segmentation and tracking
    ground truth, in the Cell Tracking Challenge layout: 01/, 01_GT/SEG/, 01_GT/TRA/."""
    from invrender.methods.cell_seg.synth import write_cell_dataset

    # Each division ends a mother's track in a frame of its own, neither the first nor the last,
    # and each mother is a different nucleus of the first frame.
    if divisions and divisions >= frames - 1:
        raise typer.BadParameter(
            f"must be < frames - 1 = {frames - 1} (divisions happen at distinct frames, not the first or last), got "
            f"{divisions}",
            param_hint="--divisions",
        )
    if divisions > cells:
        raise typer.BadParameter(f"must be <= --cells = {cells}, got {divisions}", param_hint="--divisions")
    try:
        summary = write_cell_dataset(out, frames=frames, size=size, cells=cells, divisions=divisions, seed=seed)
    except ValueError as err:  # the nuclei do not fit into the frame
        raise typer.BadParameter(str(err), param_hint="--cells") from None
    typer.echo(
        f"wrote {frames} frame(s) of {len(summary['tracks'])} tracks ({divisions} division(s), SNR "
        f"{summary['snr']:.1f}) to {out}",
        err=True,
    )
