"""`invrender.refine_splines`: spline-refine on arrays in memory. Each image the command line
reads goes through `refine_with_config`, the part of `refine_splines` after its config is composed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Unpack

import numpy as np
import torch
from omegaconf import DictConfig

from invrender.config import check_config_values
from invrender.core.geometry.spline_io import (
    frames_from_array,
    parse_splines,
    read_splines,
    record_fields,
    splines_json,
    validate_splines,
)
from invrender.core.io import check_axes_image, expect_axes
from invrender.core.optim.loss_log import LossLog
from invrender.core.optim.phases import PhaseRecord
from invrender.method import MethodConfig, RunOptions, SizeOption, api_steps, run_options
from invrender.methods.spline_refine.fit import QUANTITIES
from invrender.methods.spline_refine.schema import RULES
from invrender.runner import StepCallback


def check_config(cfg: DictConfig, device) -> None:
    check_config_values(cfg, RULES)


#: The axes spline-refine takes: one 2D image, or a stack refined frame by frame (a time-lapse); a
#: 3D image whose file does not name its axes is taken as a stack, as before files named them.
IMAGE_AXES = ("YX", "TYX")
UNLABELLED_AXES = ("TYX",)


def width_overrides(cfg: DictConfig, width: float) -> list[str]:
    """`--width W` as config overrides of `cfg`: the expected body width `prior.width` (px), and
    `groups.reach` (how far a body may lie from its init: the init's error plus half the body's
    width) by half the change. Other lengths are not the body's width: `groups.unit` is the frame
    scale the defaults were tuned at, `render.cut` and the init's widths are relative to it."""
    reach = float(cfg.groups.reach) + (width - float(cfg.prior.width)) / 2
    return [f"prior.width={float(width)!r}", f"groups.reach={reach!r}"]


WIDTH = SizeOption(
    "width",
    "The bodies' expected width in pixels (the FWHM of a cross-section): sets `prior.width` (used where the init "
    "has no widths) and `groups.reach` with it (default: the config's, 5).",
    width_overrides,
)
CONFIG = MethodConfig(
    "spline-refine", "spline_refine", check_config, renderer_kind="curves", quantities=QUANTITIES, size=WIDTH
)


@dataclass
class SplineRefineResult:
    """What spline-refine found, per frame of the image (one frame for a 2D image). Points are
    `[x, y]` in pixels (x = column, the centre of the top-left pixel at `[0, 0]`); widths are the
    full width at half maximum of a body's cross-section, in pixels."""

    method: str  # the config's `method`: "render" or "active-contour"
    # Per frame, one record per spline: "id" (the init's), "points" (N, 2) uniform in arc length
    # (N = config output.points), "widths" (N,) px or None (active-contour), and with method render
    # "knots" (K, 2) px and "loss": the spline's own loss (the mean squared residual where its
    # rendering is, intensities normalised to about [0, 1]), None where it has no pixels. A frame's
    # records are a valid init for `refine_splines` again.
    splines: list[list[dict]]
    render: np.ndarray | None  # float32, the image's shape: the modelled image in its grey values (method render)
    losses: list[float]  # the objective at every step of every fit, in the order they ran
    frame_losses: list[float]  # per frame, the render's mean squared error on the normalised image (method render)
    phases: list[list[PhaseRecord]]  # per frame (method render)
    warnings: list[str]  # diverged fits (their result is the last finite state) and bodies lost in a video
    # A propagated video's (config video.propagate) bodies that the short fit lost: {"frame", "ids"},
    # re-fitted from that frame's init, or lost for good (no init for the frame). None for other inputs.
    refitted: list[dict] | None = None
    lost: list[dict] | None = None

    def to_json(self, image: str = "") -> dict[str, Any]:
        """The `invrender.splines` JSON object the command line writes (`json.dump` it to save it);
        `image` names the image file the splines belong to."""
        return splines_json(self.splines, image, extra={"method": self.method})


def refine_splines(
    image: np.ndarray,
    init: Any,
    *,
    axes: str | None = None,
    channel: int | None = None,
    width: float | None = None,
    **run: Unpack[RunOptions],
) -> SplineRefineResult:
    """Refine the splines of slender bodies (e.g. C. elegans) on an image by rendering them (Splender).

    image: `(y, x)`, or a stack `(t, y, x)` refined frame by frame (with the override
    `video.propagate=true` each frame starts from the previous one's result, and `init` may hold the
    first frame's splines only). init: the splines to start from, points `[x, y]` in pixels, as
    - a list of `(N, 2)` arrays (one frame),
    - a list of records `{"id", "points", "widths"}` (widths `(N,)` px or None), as in the JSON format,
    - a list of such lists, one per frame of a stack,
    - an array `(n_splines, N, 2)` or `(frames, n_splines, N, 2)`,
    - the `invrender.splines` JSON object (parsed), or the path of a `.json` or `.npy` file.
    axes (as `--axes`): names the dimensions of `image` in tifffile's letters when they are others,
    e.g. "CYX" with `channel`, the channel to use (0-based, as `--channel`). width (as `--width`):
    the bodies' expected width in pixels (see `width_overrides`).
    run: config, overrides, device, seed and progress (`RunOptions`), as the command line's
    `invrender spline-refine --config NAME --device D --seed N key=value ...` (the override
    `method=active-contour` for the classical baseline). Torch's global random state is left as it was.
    Raises InputError or ConfigError (one line) on bad input, as the command line does.
    """
    run = run_options("refine_splines", run)
    cfg, device = CONFIG.resolve(run["config"], run["overrides"], run["device"], size=width)
    checked = check_axes_image(image, "image", axes, channel=channel)
    image = expect_axes(checked, "image", IMAGE_AXES, UNLABELLED_AXES).array
    frames, init_source = init_frames(init)
    with api_steps(run["progress"]) as on_step:
        return refine_with_config(image, frames, cfg, device, run["seed"], on_step, init_source)


def with_init_fields(refined: list[list[dict]], inits: list[list[dict] | None]) -> list[list[dict]]:
    """The refined records with their init's own fields (`record_fields`, e.g. a detector's `score`
    or `track`), from the init record of the same id in the same frame or, for a frame the init has
    none for (propagated), the latest earlier one. A key the fit writes itself (`loss`, `suspect`,
    ...) keeps the fit's value."""
    fields: dict[Any, dict] = {}
    out = []
    for f, frame in enumerate(refined):
        for record in (inits[f] if f < len(inits) else None) or []:
            fields[record["id"]] = record_fields(record)
        out.append([{**r, **{k: v for k, v in fields.get(r["id"], {}).items() if k not in r}} for r in frame])
    return out


def init_frames(init: Any) -> tuple[list[list[dict]], str]:
    """The frames of spline records of any form `refine_splines` takes, and the name its errors give
    the init (the file's path, else "init")."""
    if isinstance(init, str | os.PathLike):
        return read_splines(init), str(init)
    if isinstance(init, np.ndarray):
        return frames_from_array("init", init), "init"
    data = _as_lists(init)
    if isinstance(data, list) and data and isinstance(data[0], list) and data[0] and isinstance(data[0][0], dict):
        data = {"frames": [{"splines": frame} for frame in data]}  # frames of records, as in the JSON format
    return parse_splines(data, "init"), "init"


def _as_lists(value: Any) -> Any:
    """Arrays and tuples as the nested lists JSON would give (a record's arrays are read as they are)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_as_lists(item) for item in value]
    return value


def refine_with_config(
    image: np.ndarray,
    frames: list[list[dict]],
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step: StepCallback | None,
    init_source: str = "init",
) -> SplineRefineResult:
    """`refine_splines` with its config composed and checked, on a checked image `(y, x)` or
    `(t, y, x)` and the init's frames of spline records, validated here against the image;
    `init_source` names the init in errors (its file on the command line)."""
    from invrender.methods.spline_refine.active_contour import active_contour_frame
    from invrender.methods.spline_refine.fit import refine_frame
    from invrender.methods.spline_refine.video import refine_video

    stack = image if image.ndim == 3 else image[None]
    method = str(cfg.method)
    propagate = method == "render" and bool(cfg.video.propagate) and len(stack) > 1
    if propagate and len(frames) == 1:  # only the first frame's init: propagation finds the rest
        validate_splines(init_source, frames, stack.shape[1:])
        frames = frames + [None] * (len(stack) - 1)
    else:
        validate_splines(init_source, frames, image.shape)
    if method != "render":
        splines = [active_contour_frame(frame_image, records, cfg) for frame_image, records in zip(stack, frames)]
        return SplineRefineResult(method, with_init_fields(splines, frames), None, [], [], [], [])

    log = LossLog(on_step)  # every step's loss, of every fit in the order they ran

    refitted = lost = None
    if propagate:
        video = refine_video(stack, frames, cfg, device, seed, log)
        fits, refitted, lost = video.frames, video.refitted, video.lost
    else:
        fits = [refine_frame(frame, records, cfg, device, seed, log) for frame, records in zip(stack, frames)]
    warnings = [
        fitted.warning if len(stack) == 1 else f"frame {f}: {fitted.warning}"
        for f, fitted in enumerate(fits)
        if fitted.warning
    ]
    warnings += [f"frame {e['frame']}: splines {e['ids']} lost, no init to find them again" for e in lost or []]
    renders = np.stack([fitted.render for fitted in fits]).astype(np.float32)
    return SplineRefineResult(
        method,
        with_init_fields([fitted.records for fitted in fits], frames),
        renders if image.ndim == 3 else renders[0],
        log.losses,
        [fitted.recon_loss for fitted in fits],
        [fitted.phases for fitted in fits],
        warnings,
        refitted,
        lost,
    )
