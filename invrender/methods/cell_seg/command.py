"""`invrender cell-seg`: jobs, outputs and the command line of the method.

An input is a Cell Tracking Challenge sequence folder (`t000.tif`, ...), a 2D+t stack or a single
2D image. A sequence or stack writes the CTC result layout into `--out` (`maskTTT.tif`,
`res_track.txt`), so one sequence goes to one output folder; a single image writes
`<stem>.labels.tif`. Both write a contour overlay per frame and `<name>.cells.json` (last, so that
it marks a complete set), the fitted contours, brightness and PSF of every frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError
from invrender.core.ctc import read_frames, write_label_frames, write_tracks
from invrender.core.io import normalise_intensity, write_json, write_png, write_tiff
from invrender.core.overlay import draw_curves, label_colours
from invrender.inputs import InputItem
from invrender.method import check_losses, config_polygon_renderer, Arguments, JobContext, MethodSpec, SharedOptions, run_method, with_shared_options
from invrender.methods.cell_seg.track import Tracker
from invrender.runner import Job, StepCallback


def input_name(path: Path) -> str:
    return path.name.removesuffix(".tiff").removesuffix(".tif")


def output_paths(out: Path, path: Path, kind: str) -> dict[str, Path]:
    """What a job writes; the last entry is written last and marks a complete set."""
    name = input_name(path)
    if kind == "image":
        return {"labels": out / f"{name}.labels.tif", "overlay": out / f"{name}.overlay.png", "cells": out / f"{name}.cells.json"}
    return {"overlays": out / "overlays", "tracks": out / "res_track.txt", "cells": out / f"{name}.cells.json"}


def segment_file(path: Path, out: Path, cfg: DictConfig, device: torch.device, seed: int, on_step: StepCallback) -> dict:
    frames = read_frames(path)
    kind = "image" if frames.kind == "image" else "sequence"
    paths = output_paths(out, path, kind)
    tracker = Tracker(cfg, config_polygon_renderer(cfg, device), seed)
    label_frames, records = [], []
    for index, (time, image) in enumerate(zip(frames.times, frames.images)):
        normalised, _, _ = normalise_intensity(image)
        fit = tracker.step(index, normalised, on_step)
        label_frames.append(fit.labels)
        records.append(frame_record(time, fit))
    labels = np.stack(label_frames).astype(np.uint16)
    summary = {"frames": len(frames.times), "cells": [len(r["cells"]) for r in records], "divisions": len(tracker.divisions),
               "tracks": len(tracker.tracks), "dropped": sum(r["dropped"] for r in records), "added": sum(r["added"] for r in records)}
    if kind == "image":
        write_tiff(paths["labels"], labels[0])
        write_png(paths["overlay"], contour_overlay(frames.images[0], records[0]))
    else:
        write_label_frames(out, "mask", labels, frames.times, frames.digits)
        paths["overlays"].mkdir(parents=True, exist_ok=True)
        for time, image, record in zip(frames.times, frames.images, records):
            write_png(paths["overlays"] / f"t{time:0{frames.digits}d}.png", contour_overlay(image, record))
    if kind != "image":
        write_tracks(paths["tracks"], tracker.track_list())
    write_json(paths["cells"], {"format": "invrender.cells", "version": 1, "input": str(path), "frames": records,
                                "divisions": [d.__dict__ for d in tracker.divisions]})
    return {"outputs": [str(p) for p in paths.values()], **summary}


def frame_record(time: int, fit) -> dict:
    """One frame's fit for `<name>.cells.json`: contours `[x, y]` px, brightness (normalised units)."""
    cells = fit.cells
    return {
        "frame": time,
        "psf_sigma": cells.sigma,
        "dropped": fit.dropped,
        "added": fit.added,
        "loss": fit.phases[-1].final.get("recon_mse") if fit.phases else None,
        "cells": [{"label": int(label), "centre": centre.tolist(), "brightness": float(b), "points": polygon.tolist()}
                  for label, centre, b, polygon in zip(cells.labels, cells.centres, cells.brightness, cells.polygons())],
    }


def contour_overlay(image: np.ndarray, record: dict) -> np.ndarray:
    """The frame with every cell's contour, coloured by its label."""
    colours = label_colours([c["label"] for c in record["cells"]])
    closed = [np.asarray(c["points"] + c["points"][:1]) for c in record["cells"]]
    return draw_curves(image, [([outline], colour) for outline, colour in zip(closed, colours)])


def check_config(cfg: DictConfig, device: torch.device) -> None:
    check_losses(cfg)
    if cfg.seeds.threshold not in ("otsu", "li") and isinstance(cfg.seeds.threshold, str):
        raise ConfigError(f"config seeds.threshold {cfg.seeds.threshold!r}: expected otsu, li or a number")
    if int(cfg.contour.radii) < 3 or not 0 <= int(cfg.contour.harmonics) <= int(cfg.contour.radii) // 2:
        raise ConfigError(f"config contour: radii must be at least 3 and harmonics at most radii / 2 (got {cfg.contour.radii}, {cfg.contour.harmonics})")
    config_polygon_renderer(cfg, device)


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
        raise ConfigError(f"{sequences[0]} is a time-lapse, which writes the CTC layout (maskTTT.tif, res_track.txt) into --out: run one time-lapse per --out folder")


def make_job(item: InputItem, cfg: DictConfig, context: JobContext) -> Job:
    path = item.path
    kind = "sequence" if is_time_lapse(path) else "image"

    def work(on_step: StepCallback) -> dict:
        return segment_file(path, context.out, cfg, context.device, context.seed, on_step)

    return Job(str(path), [list(output_paths(context.out, path, kind).values())[-1]], work)


SPEC = MethodSpec("cell-seg", "cell_seg", make_job, check_config, check_inputs, keep_folders=True, cpu_only=True)


@with_shared_options
def cell_seg(
    arguments: Arguments,
    shared: SharedOptions = SharedOptions(),
) -> None:
    """Segment and track cells: every cell a star-convex contour fitted by differentiable rendering
    (CTC sequence folder -> maskTTT.tif + res_track.txt; single image -> <stem>.labels.tif)."""
    raise typer.Exit(run_method(SPEC, arguments, shared))
