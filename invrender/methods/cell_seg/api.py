"""`invrender.segment_cells`: cell-seg on arrays in memory. For every stage, the command line hands
each input it reads to `segment_with_config`, as `segment_cells` does after composing its config."""

from __future__ import annotations

import operator
import time as clock
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Unpack

import numpy as np
import torch
from omegaconf import DictConfig

from invrender.config import ConfigError, check_config_values
from invrender.core.geometry.polygons import mask_outlines
from invrender.core.io import InputError, check_axes_image, expect_axes, normalise_intensity
from invrender.core.optim.phases import PhaseRecord
from invrender.method import MethodConfig, RunOptions, SizeOption, api_steps, config_renderer, run_options
from invrender.methods.cell_seg import stage2
from invrender.methods.cell_seg.ctc import FRAME_AXES, MAX_LABEL, MIN_DIGITS, Frames, check_label_image
from invrender.methods.cell_seg.fit import QUANTITIES, FrameFit
from invrender.methods.cell_seg.overlap_tracking import link_by_overlap
from invrender.methods.cell_seg.schema import RULES
from invrender.methods.cell_seg.sizes import diameter_overrides
from invrender.methods.cell_seg.track import Tracker
from invrender.runner import StepCallback


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


DIAMETER = SizeOption(
    "diameter",
    "The typical cell diameter in pixels, as in cellpose: every size in pixels of the config is scaled from the "
    "config's `diameter` (22) to it (the manifest records the scaled config).",
    diameter_overrides,
)
CONFIG = MethodConfig(
    "cell-seg",
    "cell_seg",
    check_config,
    cpu_only=True,
    renderer_kind="polygons",
    quantities=QUANTITIES,
    size=DIAMETER,
)


def stage_override(stage: int | str | None) -> list[str]:
    """`--stage` / `stage=` as a config override (none: the config's `stage`). Quoted: the config's
    `stage` is text, and Hydra would read a bare 2 as a number. Checked with the config (schema.py)."""
    return [] if stage is None else [f"stage='{stage}'"]


@dataclass
class CellSegResult:
    """What cell-seg found in a time-lapse. Lengths in pixels, points `[x, y]` (x = column, the
    centre of the top-left pixel at [0, 0]); frames are numbered from 0 in the Python API (on the
    command line, by the input's frame numbers: t005.tif is frame 5)."""

    labels: np.ndarray  # (t, y, x) uint16: 0 the background, every cell its track's label (a 2D input: t = 1)
    tracks: np.ndarray  # (n, 4) int64: the CTC res_track.txt rows label, first frame, last frame, parent (0: none)
    records: list[dict]  # per frame, what <name>.cells.json holds: "frame" and its "cells", each with "label",
    # "centre" [x, y] and "points", its contour [x, y]; stage 1 also per cell "brightness" (above the
    # background, normalised intensity) and per frame "psf_sigma" px, "loss" (the final recon_mse),
    # "dropped", "added" (cells) and "warning" (a fit that diverged); stages 2 and both per cell "area" px
    divisions: list[dict]  # "mother" label, "frame" (the daughters' first), "daughters" [label, label]
    stage: str  # "1", "both" or "2"
    phases: dict[int, list[PhaseRecord]] = field(default_factory=dict)  # the fitted frames' phases, by frame
    warnings: list[str] = field(default_factory=list)  # "frame T: ..." for every fit that diverged
    train_frames: list[int] = field(default_factory=list)  # stages 2 and both: the frames that trained the network
    stage1_masks: np.ndarray | None = None  # stages 2 and both: (k, y, x) uint16 their masks, in that order
    network: torch.nn.Module | None = None  # stages 2 and both: the trained U-Net (eval mode, on the CPU)
    training_losses: list[float] = field(default_factory=list)  # stages 2 and both: cross-entropy per step
    seconds: dict[str, float] = field(default_factory=dict)  # stages 2 and both: stage1, training, segmentation

    @property
    def contours(self) -> list[dict[int, np.ndarray]]:
        """Per frame, label -> the cell's contour (k, 2) `[x, y]` px: in stage 1 the fitted
        star-convex polygon, in stages 2 and both the outline of the network's mask."""
        return [{cell["label"]: np.asarray(cell["points"]) for cell in record["cells"]} for record in self.records]

    @property
    def losses(self) -> list[float | None]:
        """Stage 1: the final reconstruction loss (mean squared error, normalised intensity) per frame."""
        return [record.get("loss") for record in self.records]

    @property
    def training_loss(self) -> float | None:
        """Stages 2 and both: the network's loss at the end of training, the mean of the last tenth
        of the steps (one step's loss is noisy)."""
        losses = self.training_losses
        return float(np.mean(losses[-max(1, len(losses) // 10) :])) if losses else None


def segment_cells(
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    axes: str | None = None,
    channel: int | None = None,
    diameter: float | None = None,
    stage: int | str | None = None,
    stage1_masks: Mapping[int, np.ndarray] | None = None,
    **run: Unpack[RunOptions],
) -> CellSegResult:
    """Segment and track the cells of a 2D fluorescence time-lapse, every cell a star-convex contour
    fitted by differentiable rendering.

    frames: a (t, y, x) time-lapse, a list of (y, x) frames, or one (y, x) image; intensities in
    any units (each frame is normalised to its 0.5..99.5 percentiles). axes (as `--axes`): names
    the dimensions of `frames` (of each frame, for a list) in tifffile's letters when they are
    others, e.g. "TCYX" with `channel`, the channel to use (0-based, as `--channel`); a z-stack
    ("ZYX") is refused. diameter (as `--diameter`): the typical cell diameter in pixels, which
    scales every size of the config from its `diameter` (methods/cell_seg/sizes.py). stage (as
    `--stage` on the command line; default the config's `stage`, "1"): 1 fits every frame; "both"
    fits `stage2.train_frames` frames, trains a U-Net on their masks and segments every frame with
    it; 2 trains on `stage1_masks` instead ({frame index: (y, x) instance labels}, e.g. the
    `stage1_masks` of an earlier "both" result) and fits nothing. run: config, overrides, device,
    seed and progress (`RunOptions`), as the command line's
    `invrender cell-seg --config NAME --device D --seed N key=value ...`.
    Raises InputError or ConfigError (one line) on bad input, as the command line does.
    """
    # A str of overrides goes to `resolve` as it is, which refuses it (unpacked, it would be letters).
    run = run_options("segment_cells", run)
    overrides = run["overrides"]
    stage_overrides = overrides if isinstance(overrides, str) else [*overrides, *stage_override(stage)]
    cfg, device = CONFIG.resolve(run["config"], stage_overrides, run["device"], size=diameter)
    chosen = str(cfg.stage)
    if chosen == "2" and stage1_masks is None:
        raise ConfigError("stage 2 trains on stage1_masks: give them ({frame index: (y, x) labels}), or use stage both")
    if chosen != "2" and stage1_masks is not None:
        raise ConfigError(f"stage1_masks: only stage 2 trains on given masks (got stage {chosen})")
    checked = frames_from_arrays(frames, axes, channel)
    check_frames(checked, chosen)
    masks = None if stage1_masks is None else label_images(stage1_masks, "stage1_masks")
    # The fit seeds torch's global generator (fit.fit_frame); the caller's state is restored after.
    with api_steps(run["progress"]) as on_step:
        return segment_with_config(checked, cfg, device, run["seed"], on_step, masks, "stage1_masks")


def frames_from_arrays(
    frames: np.ndarray | Sequence[np.ndarray], axes: str | None = None, channel: int | None = None
) -> Frames:
    """The Python API's `frames` as the command line's `Frames`, numbered 0, 1, ... and checked as
    files are (finite numbers, 2D frames of one size, a channel picked; `axes` None: (y, x) or
    (t, y, x)); InputError naming the argument otherwise."""

    def checked(array: np.ndarray, name: str, accepted: tuple[str, ...], unlabelled: tuple[str, ...] = ()):
        return expect_axes(check_axes_image(array, name, axes, channel=channel), name, accepted, unlabelled).array

    if isinstance(frames, list | tuple):
        if not frames:
            raise InputError("frames", "an empty list: give at least one (y, x) frame")
        images = [checked(frame, f"frames[{i}]", ("YX",)) for i, frame in enumerate(frames)]
        for i, image in enumerate(images):
            if image.shape != images[0].shape:
                raise InputError(
                    f"frames[{i}]", f"frame of shape {image.shape} differs from frames[0] {images[0].shape}"
                )
        stack = np.stack(images)
    else:
        stack = checked(frames, "frames", FRAME_AXES, ("TYX",))  # documented: a 3D array is (t, y, x)
    kind = "image" if stack.ndim == 2 else "stack"
    stack = stack.reshape(-1, *stack.shape[-2:])
    return Frames(stack, list(range(len(stack))), kind, "frames", MIN_DIGITS)


def label_images(masks: Mapping[int, np.ndarray], source: str) -> dict[int, np.ndarray]:
    """The Python API's {frame: (y, x) labels}, each checked as a label file is; InputError naming
    the argument otherwise."""
    if not isinstance(masks, Mapping):
        raise InputError(source, f"got {type(masks).__name__}: give a mapping {{frame index: (y, x) label image}}")
    checked = {}
    for time, mask in masks.items():
        try:
            time = operator.index(time)
        except TypeError:
            raise InputError(source, f"key {time!r}: frames are given by their index, an integer") from None
        checked[time] = check_label_image(mask, f"{source}[{time}]")
    return checked


def check_frames(frames: Frames, stage: str) -> None:
    """InputError naming the input when there is nothing for `stage` to do: one image for stage 2
    (which learns from a time-lapse), or only blank frames (one value throughout: most likely the
    wrong file or channel). A blank frame among others is valid data: its fit has no cells."""
    if frames.kind == "image" and stage != "1":
        raise InputError(
            frames.source,
            "a single 2D image: stage 2 needs a time-lapse (a CTC sequence folder, a 2D+t TIFF or a (t, y, x) "
            f"array); use stage 1 (got stage {stage})",
        )
    images = frames.images
    if np.any(images.min(axis=(1, 2)) != images.max(axis=(1, 2))):
        return
    values = np.unique(images[:, 0, 0])
    detail = (
        f"every pixel {values[0]:g}" if len(values) == 1 else f"one value per frame, {values[0]:g} to {values[-1]:g}"
    )
    what = "the image is" if len(images) == 1 else f"all {len(images)} frames are"
    raise InputError(frames.source, f"{what} blank ({detail}): no cells to segment")


def segment_with_config(
    frames: Frames,
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step: StepCallback | None,
    stage1_masks: dict[int, np.ndarray] | None = None,
    masks_source: str = "stage1_masks",
) -> CellSegResult:
    """`segment_cells` with its config composed and checked, on frames passed by `check_frames`,
    at the stage `cfg.stage`; stage 2 trains on `stage1_masks` {frame number: (y, x) labels}, which
    `masks_source` names in errors (the stage-1 folder on the command line)."""
    normalised = np.stack([normalise_intensity(image)[0] for image in frames.images])
    if str(cfg.stage) == "1":
        return fit_every_frame(frames, normalised, cfg, device, seed, on_step)
    return segment_with_network(frames, normalised, cfg, device, seed, on_step, stage1_masks, masks_source)


def fit_every_frame(
    frames: Frames, normalised: np.ndarray, cfg: DictConfig, device: torch.device, seed: int, on_step
) -> CellSegResult:
    """Stage 1: every normalised frame (T, H, W) fitted in order, each starting from the cells of
    the frame before, which carries the labels over into tracks."""
    tracker = Tracker(cfg, config_renderer(cfg, device, "polygons"), seed)
    label_frames, records, phases = [], [], {}
    for time, image in zip(frames.times, normalised):
        fit = tracker.step(time, image, on_step)
        label_frames.append(fit.labels)
        records.append(frame_record(time, fit))
        phases[time] = fit.phases
    return CellSegResult(
        np.stack(label_frames).astype(np.uint16),
        track_array(tracker.track_list()),
        records,
        [{"mother": d.mother, "frame": d.frame, "daughters": list(d.daughters)} for d in tracker.divisions],
        "1",
        phases,
        [f"frame {r['frame']}: {r['warning']}" for r in records if "warning" in r],
    )


def segment_with_network(
    frames: Frames,
    normalised: np.ndarray,
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step,
    stage1_masks: dict[int, np.ndarray] | None,
    masks_source: str,
) -> CellSegResult:
    """Stages 2 and both: masks of a few frames (fitted now with "both", else `stage1_masks`) train
    the U-Net, which segments every frame; the cells are linked into tracks by overlap."""
    settings = cfg.stage2
    started = clock.perf_counter()
    fits: dict[int, FrameFit] = {}  # by frame number
    if str(cfg.stage) == "both":
        indices = stage2.training_indices(int(settings.train_frames), len(frames.times))
        fits = fit_training_frames(frames, normalised, indices, cfg, device, seed, on_step)
        masks = np.stack([fit.labels for fit in fits.values()]).astype(np.uint16)
    else:
        indices, masks = check_stage1_masks(stage1_masks, frames, masks_source)
    fitted = clock.perf_counter()
    targets = np.stack([stage2.class_targets(mask, int(settings.boundary)) for mask in masks])
    network, losses = stage2.train_network(normalised[indices], targets, settings, seed, on_step)
    trained = clock.perf_counter()
    predicted = np.stack(
        [stage2.segment_frame(network, image, float(settings.min_area), int(settings.tile)) for image in normalised]
    )
    labels, tracks = link_by_overlap(predicted, float(settings.min_iou), float(settings.division_cover))
    tracks = [
        (label, frames.times[begin], frames.times[end], parent) for label, begin, end, parent in tracks
    ]  # indices -> frame numbers
    segmented = clock.perf_counter()
    return CellSegResult(
        labels,
        track_array(tracks),
        [labels_record(time, frame) for time, frame in zip(frames.times, labels)],
        divisions_from_tracks(tracks),
        str(cfg.stage),
        {time: fit.phases for time, fit in fits.items()},
        [f"frame {time}: {fit.warning}" for time, fit in fits.items() if fit.warning],
        [frames.times[i] for i in indices],
        masks,
        network,
        losses,
        {"stage1": fitted - started, "training": trained - fitted, "segmentation": segmented - trained},
    )


def fit_training_frames(
    frames: Frames,
    normalised: np.ndarray,
    indices: list[int],
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step,
) -> dict[int, FrameFit]:
    """Stage-1 fits of the frames `indices` of normalised frames (T, H, W), by frame number, by
    stage 1's tracker run over these frames only: each starts from the previous training frame's
    cells. (Fitting each from its own seeds instead was 9 times slower on a synthetic time-lapse,
    222 s against 24 s for 5 frames of 256 x 256, and the network it trained no better.)"""
    tracker = Tracker(cfg, config_renderer(cfg, device, "polygons"), seed)
    return {frames.times[index]: tracker.step(index, normalised[index], on_step) for index in indices}


def check_stage1_masks(
    masks: dict[int, np.ndarray] | None, frames: Frames, source: str
) -> tuple[list[int], np.ndarray]:
    """The indices in `frames` of the frames that stage-1 masks {frame number: (H, W) labels} are
    of, in frame order, and the masks (K, H, W) uint16. InputError naming `source` when there are
    none, or one does not fit the time-lapse."""
    if not masks:
        raise InputError(source, "no stage-1 masks: stage 2 trains on the masks of at least one frame")
    index_of = {time: i for i, time in enumerate(frames.times)}
    ordered = sorted(masks)
    for time in ordered:
        mask = masks[time]
        if time not in index_of:
            raise InputError(source, f"stage-1 mask of frame {time}, which {frames.source} does not have")
        if mask.shape != frames.images.shape[1:]:
            raise InputError(
                source, f"stage-1 mask of frame {time} has shape {mask.shape}, the frames {frames.images.shape[1:]}"
            )
        if mask.size and mask.max() > MAX_LABEL:
            raise InputError(source, f"stage-1 mask of frame {time} has label {mask.max()}, above {MAX_LABEL}")
    return [index_of[time] for time in ordered], np.stack([masks[time] for time in ordered]).astype(np.uint16)


def track_array(tracks: list[tuple[int, int, int, int]]) -> np.ndarray:
    """CTC tracks `(L, B, E, P)` as an (n, 4) int64 array."""
    return np.array(tracks, dtype=np.int64).reshape(-1, 4)


def frame_record(time: int, fit: FrameFit) -> dict:
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
