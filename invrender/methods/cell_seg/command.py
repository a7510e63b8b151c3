"""`invrender cell-seg`: jobs, outputs and the command line of the method.

An input is a Cell Tracking Challenge sequence folder (`t000.tif`, ...), a 2D+t stack or a single
2D image. A sequence or stack writes the CTC result layout into `--out` (`maskTTT.tif`,
`res_track.txt`), so one sequence goes to one output folder; a single image writes
`<stem>.labels.tif`. Both write a contour overlay per frame and `<name>.cells.json` (last, so that
it marks a complete set), the fitted contours, brightness and PSF of every frame.

`--stage` (config key `stage`) picks how a time-lapse is segmented: "1" fits every frame; "both"
fits a few frames (their masks go to `OUT/stage1/`), trains a U-Net on them (`OUT/stage2/`) and
segments every frame with it, linking the cells by overlap; "2" does the latter from the masks
already in `OUT/stage1/`.
"""

from __future__ import annotations

import time as clock
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError, check_config_values
from invrender.core.io import InputError, atomic_path, normalise_intensity, read_json, write_json, write_png, write_tiff
from invrender.core.overlay import draw_curves, label_colours, mask_outlines
from invrender.inputs import InputItem
from invrender.method import JobContext, MethodSpec, config_renderer
from invrender.methods.cell_seg import stage2
from invrender.methods.cell_seg.ctc import Frames, read_frames, read_label_frames, write_label_frames, write_tracks
from invrender.methods.cell_seg.fit import QUANTITIES
from invrender.methods.cell_seg.overlap_tracking import link_by_overlap
from invrender.methods.cell_seg.schema import RULES
from invrender.methods.cell_seg.track import Tracker
from invrender.options import Arguments, SharedOptions, SynthOut, SynthSeed, with_shared_options
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
    if kind == "image":
        return {
            "labels": out / f"{name}.labels.tif",
            "overlay": out / f"{name}.overlay.png",
            "cells": out / f"{name}.cells.json",
        }
    fitted = {"stage1": stage1_folder(out)} if stage == "both" else {}
    trained = {} if stage == "1" else {"network": out / "stage2" / "network.pt", "loss": out / "stage2" / "loss.csv"}
    return {
        **fitted,
        **trained,
        "overlays": out / "overlays",
        "tracks": out / "res_track.txt",
        "cells": out / f"{name}.cells.json",
    }


def segment_file(
    path: Path, out: Path, cfg: DictConfig, device: torch.device, seed: int, on_step: StepCallback
) -> dict:
    frames = read_frames(path)
    refuse_blank(frames)
    kind = "image" if frames.kind == "image" else "sequence"
    if kind == "sequence":
        claim_sequence_folder(out, path)
    paths = output_paths(out, path, kind)
    tracker = Tracker(cfg, config_renderer(cfg, device, "polygons"), seed)
    label_frames, records = [], []
    for time, image in zip(frames.times, frames.images):
        normalised, _, _ = normalise_intensity(image)
        fit = tracker.step(time, normalised, on_step)
        label_frames.append(fit.labels)
        records.append(frame_record(time, fit))
    labels = np.stack(label_frames).astype(np.uint16)
    warnings = [f"frame {r['frame']}: {r['warning']}" for r in records if "warning" in r]  # a fit that diverged
    summary = {
        "frames": len(frames.times),
        "cells": [len(r["cells"]) for r in records],
        "divisions": len(tracker.divisions),
        "tracks": len(tracker.tracks),
        "dropped": sum(r["dropped"] for r in records),
        "added": sum(r["added"] for r in records),
        **({"warning": "; ".join(warnings)} if warnings else {}),
    }
    if kind == "image":
        write_tiff(paths["labels"], labels[0])
        write_png(paths["overlay"], contour_overlay(frames.images[0], records[0]))
    else:
        write_sequence(out, paths, frames, labels, records, tracker.track_list())
    write_json(
        paths["cells"],
        {
            "format": "invrender.cells",
            "layout": "ctc-sequence" if kind == "sequence" else "image",
            "version": 1,
            "input": str(path),
            "stage": "1",
            "frames": records,
            "divisions": [d.__dict__ for d in tracker.divisions],
        },
    )
    return {"outputs": [str(p) for p in paths.values()], **summary}


def refuse_blank(frames: Frames) -> None:
    """InputError naming the input when every frame is blank (one value throughout): nothing to
    segment, most likely the wrong file or channel. A blank frame among others is valid data: its
    fit has no cells."""
    images = frames.images
    if np.any(images.min(axis=(1, 2)) != images.max(axis=(1, 2))):
        return
    values = np.unique(images[:, 0, 0])
    detail = (
        f"every pixel {values[0]:g}" if len(values) == 1 else f"one value per frame, {values[0]:g} to {values[-1]:g}"
    )
    what = "the image is" if len(images) == 1 else f"all {len(images)} frames are"
    raise InputError(frames.source, f"{what} blank ({detail}): no cells to segment")


def write_sequence(
    out: Path,
    paths: dict[str, Path],
    frames: Frames,
    labels: np.ndarray,
    records: list[dict],
    tracks: list[tuple[int, int, int, int]],
) -> None:
    """The CTC result layout of a time-lapse: `maskTTT.tif` from labels (T, H, W), an overlay of the
    cells' outlines per frame, `res_track.txt`. Frames of an earlier run of this sequence that this
    run has not (a sequence with fewer frames now) are removed, so the folder holds one result."""
    written = write_label_frames(out, "mask", labels, frames.times, frames.digits)
    paths["overlays"].mkdir(parents=True, exist_ok=True)
    overlays = [paths["overlays"] / f"t{time:0{frames.digits}d}.png" for time in frames.times]
    for stale in {*out.glob("mask*.tif"), *paths["overlays"].glob("t*.png")} - {*written, *overlays}:
        stale.unlink()
    for overlay, image, record in zip(overlays, frames.images, records):
        write_png(overlay, contour_overlay(image, record))
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


def segment_with_network(
    path: Path, out: Path, cfg: DictConfig, device: torch.device, seed: int, on_step: StepCallback
) -> dict:
    """Stage 2 on a time-lapse: masks of a few frames (fitted now, or from `OUT/stage1/`) train the
    U-Net, which segments every frame; the cells are linked into tracks by overlap. Writes the CTC
    layout into `out` like stage 1, plus `stage1/` (with "both"), `stage2/network.pt` and
    `stage2/loss.csv`."""
    frames = read_frames(path)
    if frames.kind == "image":
        raise InputError(
            path,
            "a single 2D image: stage 2 needs a time-lapse (a CTC sequence folder or a 2D+t TIFF); use --stage 1 "
            f"(got stage {cfg.stage})",
        )
    refuse_blank(frames)
    claim_sequence_folder(out, path)
    paths = output_paths(out, path, "sequence", str(cfg.stage))
    settings = cfg.stage2
    normalised = np.stack([normalise_intensity(image)[0] for image in frames.images])
    started = clock.perf_counter()
    train_indices, masks = training_masks(frames, normalised, out, cfg, device, seed, on_step)
    fitted = clock.perf_counter()
    targets = np.stack([stage2.class_targets(mask, int(settings.boundary)) for mask in masks])
    network, losses = stage2.train_network(normalised[train_indices], targets, settings, seed, on_step)
    train_times = [frames.times[i] for i in train_indices]
    stage2.save_network(paths["network"], network, settings, train_times)
    write_losses(paths["loss"], losses)
    trained = clock.perf_counter()
    predicted = np.stack(
        [stage2.segment_frame(network, image, float(settings.min_area), int(settings.tile)) for image in normalised]
    )
    labels, tracks = link_by_overlap(predicted, float(settings.min_iou), float(settings.division_cover))
    tracks = [
        (label, frames.times[begin], frames.times[end], parent) for label, begin, end, parent in tracks
    ]  # indices -> frame numbers
    segmented = clock.perf_counter()
    records = [labels_record(time, frame) for time, frame in zip(frames.times, labels)]
    write_sequence(out, paths, frames, labels, records, tracks)
    divisions = divisions_from_tracks(tracks)
    final_loss = float(np.mean(losses[-max(1, len(losses) // 10) :]))  # the last tenth: one step's loss is noisy
    seconds = {"stage1": fitted - started, "training": trained - fitted, "segmentation": segmented - trained}
    write_json(
        paths["cells"],
        {
            "format": "invrender.cells",
            "layout": "ctc-sequence",
            "version": 1,
            "input": str(path),
            "stage": str(cfg.stage),
            "stage2": {
                "train_frames": train_times,
                "masks": str(stage1_folder(out)),
                "network": str(paths["network"]),
                "steps": len(losses),
                "final_loss": final_loss,
                "seconds": seconds,
            },
            "frames": records,
            "divisions": divisions,
        },
    )
    return {
        "outputs": [str(p) for p in paths.values()],
        "frames": len(frames.times),
        "cells": [len(r["cells"]) for r in records],
        "divisions": len(divisions),
        "tracks": len(tracks),
        "train_frames": train_times,
        "loss": final_loss,
        "seconds": seconds,
    }


def training_masks(
    frames: Frames,
    normalised: np.ndarray,
    out: Path,
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step: StepCallback,
) -> tuple[list[int], np.ndarray]:
    """The frames that train the network (indices into `frames`) and their instance masks (K, H, W):
    with stage "both" the evenly spaced `stage2.train_frames` fitted now (and written to
    `OUT/stage1/`), with "2" whichever masks are in `OUT/stage1/` already."""
    if str(cfg.stage) != "both":
        return read_stage1_masks(stage1_folder(out), frames)
    indices = stage2.training_indices(int(cfg.stage2.train_frames), len(frames.times))
    masks = fit_training_frames(normalised, indices, cfg, device, seed, on_step)
    write_label_frames(stage1_folder(out), "mask", masks, [frames.times[i] for i in indices], frames.digits)
    return indices, masks


def fit_training_frames(
    normalised: np.ndarray, indices: list[int], cfg: DictConfig, device: torch.device, seed: int, on_step: StepCallback
) -> np.ndarray:
    """Stage-1 instance masks (K, H, W) uint16 of the frames `indices` of normalised frames (T, H, W),
    by stage 1's tracker run over these frames only: each starts from the previous training frame's
    cells. (Fitting each from its own seeds instead was 9 times slower on a synthetic time-lapse,
    222 s against 24 s for 5 frames of 256 x 256, and the network it trained no better.)"""
    tracker = Tracker(cfg, config_renderer(cfg, device, "polygons"), seed)
    return np.stack([tracker.step(index, normalised[index], on_step).labels for index in indices]).astype(np.uint16)


def read_stage1_masks(folder: Path, frames: Frames) -> tuple[list[int], np.ndarray]:
    """The stage-1 masks an earlier `--stage both` run wrote: the indices of their frames in `frames`
    and the masks (K, H, W). InputError (naming the folder or file) when there are none, or one
    does not fit the time-lapse."""
    if not folder.is_dir() or not any(folder.glob("mask*.tif")):
        raise InputError(folder, "no stage-1 masks maskTTT.tif here: run --stage both first (it writes them)")
    masks = read_label_frames(folder, "mask")
    index_of = {time: i for i, time in enumerate(frames.times)}
    for time, mask in masks.items():
        if time not in index_of:
            raise InputError(folder, f"stage-1 mask of frame {time}, which {frames.source} does not have")
        if mask.shape != frames.images.shape[1:]:
            raise InputError(
                folder, f"stage-1 mask of frame {time} has shape {mask.shape}, the frames {frames.images.shape[1:]}"
            )
    return [index_of[time] for time in masks], np.stack(list(masks.values())).astype(np.uint16)


def write_losses(path: Path, losses: list[float]) -> None:
    """The training loss per step as CSV `step,loss`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(
            "step,loss\n" + "".join(f"{step},{loss:.6g}\n" for step, loss in enumerate(losses)), encoding="ascii"
        )


def labels_record(time: int, labels: np.ndarray) -> dict:
    """One frame of the network's segmentation for `<name>.cells.json`: per cell its label, centre
    `[x, y]` px, area px and outline `points` (the longest marching-squares contour of its mask,
    `[x, y]` px), so that the record reads like a stage-1 frame without the fitted appearance."""
    from skimage.measure import regionprops

    cells = []
    for region in regionprops(labels):
        top, left = region.bbox[:2]
        outline = max(mask_outlines(region.image), key=len) + [left, top]
        cells.append(
            {
                "label": int(region.label),
                "centre": [float(region.centroid[1]), float(region.centroid[0])],
                "area": int(region.area),
                "points": outline.round(2).tolist(),
            }
        )
    return {"frame": int(time), "cells": cells}


def divisions_from_tracks(tracks: list[tuple[int, int, int, int]]) -> list[dict]:
    """The divisions that CTC tracks `(L, B, E, P)` hold: for every parent, its label, the frame its
    daughters begin in, and their labels."""
    daughters: dict[int, list[int]] = {}
    for label, _, _, parent in tracks:
        if parent:
            daughters.setdefault(parent, []).append(label)
    begins = {label: begin for label, begin, _, _ in tracks}
    return [
        {"mother": mother, "frame": begins[children[0]], "daughters": children}
        for mother, children in sorted(daughters.items())
    ]


def frame_record(time: int, fit) -> dict:
    """One frame's fit for `<name>.cells.json`: contours `[x, y]` px, brightness (normalised units)."""
    cells = fit.cells
    return {
        "frame": time,
        "psf_sigma": cells.sigma,
        "dropped": fit.dropped,
        "added": fit.added,
        "loss": fit.phases[-1].final.get("recon_mse") if fit.phases else None,
        **({"warning": fit.warning} if fit.warning else {}),
        "cells": [
            {"label": int(label), "centre": centre.tolist(), "brightness": float(b), "points": polygon.tolist()}
            for label, centre, b, polygon in zip(cells.labels, cells.centres, cells.brightness, cells.polygons())
        ],
    }


def contour_overlay(image: np.ndarray, record: dict) -> np.ndarray:
    """The frame with every cell's contour, coloured by its label."""
    colours = label_colours([c["label"] for c in record["cells"]])
    closed = [np.asarray(c["points"] + c["points"][:1]) for c in record["cells"]]
    return draw_curves(image, [([outline], colour) for outline, colour in zip(closed, colours)])


def check_config(cfg: DictConfig, device: torch.device) -> None:
    check_config_values(cfg, RULES)
    contour, seeds, settings = cfg.contour, cfg.seeds, cfg.stage2
    if int(contour.harmonics) > int(contour.radii) // 2:
        raise ConfigError(
            f"config contour.harmonics {contour.harmonics}: must be at most radii // 2 = {contour.radii // 2}"
        )
    if float(seeds.min_sigma) > float(seeds.max_sigma):
        raise ConfigError(f"config seeds.min_sigma {seeds.min_sigma}: must be at most max_sigma {seeds.max_sigma}")
    if int(settings.crop) < 2 ** len(settings.widths):
        raise ConfigError(
            f"config stage2.crop {settings.crop}: must be at least 2**len(widths) = {2 ** len(settings.widths)} px, "
            "one pixel at the coarsest level"
        )
    config_renderer(cfg, device, "polygons")


def is_time_lapse(path: Path) -> bool:
    """A sequence folder, or a TIFF whose image is 3D (2D+t); unreadable files count as images (their
    job reports them)."""
    if path.is_dir():
        return True
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return len([n for n in tif.series[0].shape if n > 1]) == 3
    except Exception:
        return False


def check_inputs(items: list[InputItem], options: dict) -> None:
    sequences = [item.path for item in items if is_time_lapse(item.path)]
    if sequences and len(items) > 1:
        raise ConfigError(
            f"{sequences[0]} is a time-lapse, which writes the CTC layout (maskTTT.tif, res_track.txt) into --out: "
            "run one time-lapse per --out folder"
        )


def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
    path = item.path
    kind = "sequence" if is_time_lapse(path) else "image"
    stage = str(cfg.stage)
    segment = segment_file if stage == "1" else segment_with_network

    def work(on_step: StepCallback) -> dict:
        return segment(path, context.out, cfg, context.device, context.seed, on_step)

    cells = output_paths(context.out, path, kind, stage)["cells"]  # written last

    def finished() -> bool:
        """A complete result of the stage asked for (records from before stages count as stage 1)."""
        try:
            return cells.is_file() and str(read_json(cells).get("stage", "1")) == stage
        except (InputError, AttributeError):  # not our record: do it again
            return False

    return Job(str(path), [cells], work, finished=finished)


SPEC = MethodSpec(
    "cell-seg",
    "cell_seg",
    make_job,
    check_config,
    check_inputs,
    keep_folders=True,
    cpu_only=True,
    renderer_kind="polygons",
    quantities=QUANTITIES,
)


@with_shared_options
def cell_seg(
    arguments: Arguments,
    stage: Annotated[
        str | None,
        typer.Option(
            "--stage",
            help="1: fit every frame | both: fit a few frames, train a U-Net on them, segment every frame with it | "
            "2: train on the masks a `both` run left in OUT/stage1 (default: the config's `stage`, 1).",
        ),
    ] = None,
    shared: SharedOptions = SharedOptions(),
) -> None:
    """Segment and track cells: every cell a star-convex contour fitted by differentiable rendering
    (CTC sequence folder -> maskTTT.tif + res_track.txt; single image -> <stem>.labels.tif)."""
    # Checked with the config (its rule in schema.py). Quoted: the config's `stage` is a string, and Hydra
    # would read a bare 2 as a number.
    overrides = [] if stage is None else [f"stage='{stage}'"]
    raise typer.Exit(run_method(SPEC, arguments, shared, overrides))


def synth_cells(
    frames: Annotated[int, typer.Option("--frames", "-f", min=1, help="Number of frames.")] = 20,
    size: Annotated[int, typer.Option("--size", min=32, help="Frame size in pixels (square).")] = 256,
    cells: Annotated[int, typer.Option("--cells", "-n", min=1, help="Nuclei in the first frame.")] = 12,
    divisions: Annotated[
        int, typer.Option("--divisions", min=0, help="How many of them divide (each at its own frame).")
    ] = 4,
    seed: SynthSeed = 0,
    out: SynthOut = Path("synth-cells"),
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
