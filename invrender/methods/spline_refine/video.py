"""Refining the splines of a time-lapse by propagation: each frame starts from the previous one's.

Between two frames of a movie a worm moves a little, so the previous frame's result, with its
fitted scene (background, appearance, widths), is a far better start than a detector's init, and a
short schedule (`video.phases`: one start, no coarse-to-fine blur, no background-only phase, few
steps) refines it. The first frame gets the full schedule from its init.

A propagated fit can lose a body: it moved too far between two frames (dropped frames, a fast
turn) and the short fit settled beside it. Its own loss (the residual where its rendering is,
see fit.py) then rises well above what it was at its last full fit, so a body whose own loss
exceeds `video.lost_factor` times that reference is lost: the frame is fitted again with the full
schedule, the lost bodies starting from the detector's init of that frame (matched to them by
position), the others from their propagated result. Without a detector's init for that frame the
body cannot be found again, and the frame's result says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.optimize import linear_sum_assignment

from invrender.core.metrics import resample_curve
from invrender.core.optim.loss_log import StepCallback
from invrender.methods.spline_refine.fit import FrameResult, refine_frame


@dataclass
class VideoResult:
    frames: list[FrameResult]
    refitted: list[dict] = field(default_factory=list)  # {"frame", "ids"}: lost, re-fitted from the frame's init
    lost: list[dict] = field(default_factory=list)  # {"frame", "ids"}: lost, no detector init to restart from


def short_schedule(cfg: DictConfig) -> DictConfig:
    """The config with `video.phases` as its phases."""
    short = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    short.phases = short.video.phases
    return short


def refine_video(
    stack: np.ndarray,
    inits: list[list[dict] | None],
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step: StepCallback | None = None,
) -> VideoResult:
    """Refine a stack `(frames, y, x)` by propagation. `inits[f]`: the detector's init records of
    frame f, or None; `inits[0]` is required."""
    first = refine_frame(stack[0], inits[0], cfg, device, seed, on_step)
    result = VideoResult([first])
    reference = own_losses(first)
    short = short_schedule(cfg)
    factor = float(cfg.video.lost_factor)
    for f in range(1, len(stack)):
        previous = result.frames[-1]
        starts = [{"id": r["id"], "points": r["points"], "widths": None} for r in previous.records]
        fitted = refine_frame(stack[f], starts, short, device, seed, on_step, previous)
        lost = [r["id"] for r in fitted.records if is_lost(r.get("loss"), reference.get(r["id"]), factor)]
        if lost and inits[f]:
            restarts = restart_records(fitted.records, lost, inits[f])
            fitted = refine_frame(stack[f], restarts, cfg, device, seed, on_step)
            reference = own_losses(fitted)
            result.refitted.append({"frame": f, "ids": lost})
        elif lost:
            result.lost.append({"frame": f, "ids": lost})
        result.frames.append(fitted)
    return result


def own_losses(fitted: FrameResult) -> dict:
    return {r["id"]: r.get("loss") for r in fitted.records}


def is_lost(loss: float | None, reference: float | None, factor: float) -> bool:
    """Whether a propagated body's own loss says the fit lost it (no loss: it left its pixels)."""
    if loss is None:
        return True
    return reference is not None and loss > factor * reference


def restart_records(fitted: list[dict], lost: list, detector: list[dict]) -> list[dict]:
    """The starts of a full re-fit: every body from its propagated result, except the lost ones,
    which start from the detector's init matched to them (all bodies and detector inits matched one
    to one by the mean distance of their resampled centrelines, either orientation)."""
    ours = np.stack([resample_curve(np.asarray(r["points"]), 20) for r in fitted])
    theirs = np.stack([resample_curve(np.asarray(r["points"]), 20) for r in detector])
    forward = np.linalg.norm(ours[:, None] - theirs[None], axis=-1).mean(-1)
    backward = np.linalg.norm(ours[:, None] - theirs[None, :, ::-1], axis=-1).mean(-1)
    rows, cols = linear_sum_assignment(np.minimum(forward, backward))
    match = dict(zip(rows.tolist(), cols.tolist()))
    restarts = []
    for i, rec in enumerate(fitted):
        if rec["id"] in lost and i in match:
            restarts.append({"id": rec["id"], "points": detector[match[i]]["points"], "widths": None})
        else:
            restarts.append({"id": rec["id"], "points": rec["points"], "widths": rec["widths"]})
    return restarts
