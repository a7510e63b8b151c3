"""Refining the splines of one frame: initialise the scene from the image and the init, run the
phases of the config, read the result out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from omegaconf import DictConfig

from invrender.core.geometry import splines
from invrender.core.io import normalise_intensity
from invrender.core.optim.loss_log import StepCallback
from invrender.core.optim.multistart import stack_starts
from invrender.core.optim.phases import PhaseRecord, run_phases_recorded
from invrender.core.render.splat2d import blob_fwhm
from invrender.methods.spline_refine.checks import (
    is_suspect,
    loss_ratio,
    posture_change,
    shared_fraction,
    start_spread,
    unexplained_fractions,
)
from invrender.methods.spline_refine.groups import (
    batches_by_body_count,
    crops,
    interacting_groups,
    local_background,
    nearest_group,
)
from invrender.methods.spline_refine.model import SplineScene, centrelines, gaussian_profile


@dataclass
class FrameResult:
    records: list[dict]  # output spline records (knots, points, widths, loss)
    render: np.ndarray  # (H, W) reconstruction in the input's intensity units
    phases: list[PhaseRecord]
    recon_loss: float  # mean squared error on the normalised image
    warning: str | None = None  # the fit diverged: the result is its last finite state
    # The fitted scene of each group of bodies (keyed by their ids), to start the next frame of a movie.
    scenes: dict[tuple, dict[str, torch.Tensor]] = field(default_factory=dict)


#: What the objective returns for the loss registry: the scene's quantities and the priors.
QUANTITIES = frozenset(
    {
        "render",
        "target",
        "width",
        "min_width_ratio",
        "bending",
        "knot_gaps",
        "knots",
        "init_knots",
        "length",
        "outside",
        "length_prior",
        "min_width_ratio_prior",
        "width_prior",
    }
)


def body_polarity(image: np.ndarray, setting: str) -> float:
    """+1 for bright bodies on a darker background, -1 for dark bodies (brightfield worms).

    `auto` compares the two tails of the intensity histogram around the median: bodies cover a
    minority of pixels, so they make the longer tail.
    """
    if setting == "bright":
        return 1.0
    if setting == "dark":
        return -1.0
    if setting != "auto":
        raise ValueError(f"polarity must be auto, dark or bright, got {setting!r}")
    low, median, high = np.percentile(image, [1, 50, 99])
    return 1.0 if high - median >= median - low else -1.0


def initial_knots(records: list[dict], n_knots: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Least-squares natural-spline knots (N, K, 2) in px for every init polyline, and the init's
    full widths resampled at the knots (N, K) in px when every spline has widths, else None."""
    knots, widths = [], []
    for rec in records:
        points = torch.as_tensor(rec["points"], dtype=torch.float64)
        keep = torch.cat([torch.tensor([True]), (points[1:] - points[:-1]).norm(dim=-1) > 1e-9])
        points = points[keep]
        if len(points) < 2:  # all points equal: nothing to fit a curve to
            points = torch.stack([points[0], points[0] + torch.tensor([1e-3, 0.0], dtype=torch.float64)])
        if rec.get("widths") is not None:
            per_point = torch.as_tensor(rec["widths"], dtype=torch.float64)[keep].unsqueeze(-1)
            fitted = splines.fit_knots(torch.cat([points, per_point], dim=-1), n_knots)
            knots.append(fitted[:, :2])
            widths.append(fitted[:, 2].clamp_min(0.5))
        else:
            knots.append(splines.fit_knots(points, n_knots))
    return torch.stack(knots), (torch.stack(widths) if len(widths) == len(records) else None)


def background_nodes(nodes: int, side: int, unit: float | None) -> int:
    """Nodes of the background grid over an image of `side` px that keep the spacing of `nodes`
    nodes over `unit` px (0 stays 0: no grid; at least 2)."""
    if not nodes or unit is None:
        return nodes
    return max(2, round(1 + (nodes - 1) * side / unit))


def refine_frame(
    image: np.ndarray,
    records: list[dict],
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    on_step: StepCallback | None = None,
    previous: FrameResult | None = None,
) -> FrameResult:
    """Refine the init splines `records` on the 2D `image` (y, x) with the config `cfg`: jointly,
    or (`groups.enabled`) each group of bodies that can touch in its own crop (see groups.py).
    `previous`: the result of the movie's previous frame, whose fitted scenes (background,
    appearance, widths) start the groups made of the same bodies."""
    scenes = {} if previous is None else previous.scenes
    normalised, offset, span = normalise_intensity(image)
    polarity = body_polarity(normalised, cfg.init.polarity)
    polylines = [np.asarray(r["points"], dtype=np.float64) for r in records]
    reach = float(cfg.groups.reach)
    joint = [list(range(len(records)))]
    groups = interacting_groups(polylines, reach) if cfg.groups.enabled and len(records) > 1 else joint
    boxes = crops(polylines, groups, reach, image.shape)
    if len(boxes) == 1 or sum(box.area for box in boxes) >= image.size:  # one fit of the frame is cheaper
        start = scenes.get(_ids(records))
        return fit_problems([image], [records], cfg, device, seed, polarity, on_step, starts=[start])[0]
    # Crops are fitted in the length unit of the frames the defaults were tuned on, so that steps,
    # priors and the background grid's spacing mean the same px in a small crop as in a frame.
    unit = float(cfg.groups.unit)

    labels, distance = nearest_group(polylines, groups, image.shape)
    near_body = distance <= reach
    background = local_background(image.astype(np.float64), near_body)
    render = background.astype(np.float32)
    records_out: list[dict] = [{} for _ in records]
    fits: list[FrameResult | None] = [None] * len(boxes)
    # Groups of as many bodies are fitted side by side in one model, each in its crop grown to the
    # batch's common size: a step's large fixed cost (Python, autograd, optimizers) is paid once a batch.
    for batch in batches_by_body_count(boxes):
        height, width = max(boxes[g].y1 - boxes[g].y0 for g in batch), max(boxes[g].x1 - boxes[g].x0 for g in batch)
        batch_crops = [boxes[g].grown_to(height, width, image.shape) for g in batch]
        patches, shifted = [], []
        for g, crop in zip(batch, batch_crops):
            # Other groups' bodies that reach into the crop are replaced by the background around them.
            foreign = crop.take(near_body & (labels != g))
            patches.append(np.where(foreign, crop.take(background), crop.take(image)).astype(np.float32))
            shifted.append([{**records[i], "points": polylines[i] - crop.offset} for i in crop.members])
        starts = [scenes.get(_ids(group_records)) for group_records in shifted]
        fitted = fit_problems(patches, shifted, cfg, device, seed, polarity, on_step, unit, starts)
        for g, crop, fit in zip(batch, batch_crops, fitted):
            for i, rec in zip(crop.members, fit.records):
                records_out[i] = {**rec, "points": rec["points"] + crop.offset, "knots": rec["knots"] + crop.offset}
            own = crop.take(labels) == g  # each pixel shows the group nearest to it
            crop.take(render)[own] = fit.render[own]
            fits[g] = fit
    phases, warnings, result_scenes = [], [], {}
    for g, fit in enumerate(fits):
        result_scenes.update(fit.scenes)
        label = f"group {g + 1}/{len(boxes)}"
        phases += [replace(p, name=f"{label}: {p.name}") for p in fit.phases]
        if fit.warning:
            warnings.append(f"{label}: {fit.warning}")
    recon_loss = float(np.mean(((render - image) / span) ** 2))
    return FrameResult(records_out, render, phases, recon_loss, "; ".join(warnings) or None, result_scenes)


def _ids(records: list[dict]) -> tuple:
    return tuple(r["id"] for r in records)


def fit_problems(
    images: list[np.ndarray],
    records: list[list[dict]],
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    polarity: float,
    on_step: StepCallback | None = None,
    unit: float | None = None,
    starts: list[dict[str, torch.Tensor] | None] | None = None,
) -> list[FrameResult]:
    """Fit P problems at once, side by side in one model (see core/optim/multistart.py): problem p
    fits the bodies `records[p]` jointly on `images[p]`. The images have one shape and the problems
    one number of bodies; each problem keeps its own best start. The problems share the schedule,
    so a divergence in one ends the phases of all (a frame's joint fit is one problem).

    polarity: +1 for bright bodies, -1 for dark. unit: the length unit (px) of the model's positions
    (default: the image's larger side); the background grid then has `model.background_grid` nodes
    per `unit` px. starts[p]: a fitted scene of the same bodies (a previous frame's) whose
    parameters, but for the knot positions (those are the records'), start problem p where their
    shapes agree."""
    torch.manual_seed(seed)
    starts = starts or [None] * len(images)
    problems = [
        _problem(image, recs, cfg, device, polarity, unit, start) for image, recs, start in zip(images, records, starts)
    ]
    model = stack_starts([problem.model for problem in problems])
    # The longest body of all sets the sampling of all, as in a joint fit of the same bodies.
    model.points_per_spline = max(problem.model.points_per_spline for problem in problems)
    target = torch.cat([problem.target for problem in problems])
    priors = {name: torch.cat([problem.priors[name] for problem in problems]) for name in problems[0].priors}

    def objective(scene: SplineScene, ctx) -> dict[str, torch.Tensor]:
        return scene(target, priors, draw_splines=ctx.option("draw_splines", True), blur=ctx.ramps.get("blur", 0.0))

    history = run_phases_recorded(
        model, objective, list(cfg.phases), dict(cfg.loss), on_step, seed=seed, bound=SplineScene.divergence
    )

    results = []
    for p, (problem, readout) in enumerate(zip(problems, _read_out(model, problems, cfg))):
        scene = {name: value[p : p + 1].detach().clone() for name, value in model.named_parameters()}
        if cfg.restart.enabled:
            readout = _restart_suspects(images[p], problem, readout, scene, cfg, device, seed, polarity, on_step, unit)
        render = readout.render.cpu().numpy() * problem.span + problem.offset
        results.append(
            FrameResult(
                readout.records,
                render.astype(np.float32),
                history.phases[p :: len(problems)] + readout.restarts,
                readout.recon,
                history.warning,
                {_ids(problem.records): scene},
            )
        )
    return results


@dataclass
class _Readout:
    """A problem's fitted state: its output records (checked, see checks.py), its render and its
    bodies' images on the normalised intensities, the render's mean squared error, and the phases
    of the restarts that replaced bodies."""

    records: list[dict]
    render: torch.Tensor  # (H, W)
    bodies: torch.Tensor  # (N, H, W) per body, before contrast
    recon: float
    restarts: list[PhaseRecord] = field(default_factory=list)


@torch.no_grad()
def _read_out(model: SplineScene, problems: list[_Problem], cfg: DictConfig) -> list[_Readout]:
    """Each problem's records, render and checks from the fitted `model` (one slice per problem)."""
    bodies = model.render_bodies()[0]
    render = model.compose(bodies)
    centers, radii, _ = model.sample(int(cfg.output.points))
    knots = model.knots_px().cpu().numpy()
    readouts = []
    for p, problem in enumerate(problems):
        fwhm = blob_fwhm(model.profile[p], model.cut)
        records = [
            {
                "id": rec["id"],
                "points": centers[p, i].cpu().numpy(),
                "widths": fwhm * radii[p, i].cpu().numpy(),
                "knots": knots[p, i],
            }
            for i, rec in enumerate(problem.records)
        ]
        readout = _Readout(records, render[p], bodies[p], float(((render[p] - problem.target[0]) ** 2).mean()))
        for rec, spread in zip(records, _start_spreads(model, p, cfg)):
            rec["start_spread"] = spread
        _check(readout, problem, None if model.held is None else model.held[p], cfg)
        readouts.append(readout)
    return readouts


def _start_spreads(model: SplineScene, p: int, cfg: DictConfig) -> list[float | None]:
    """For each body of problem `p`: how far the starts of the model's last multi-start phase whose
    loss came within `output.start_tolerance` of the kept start's put it (checks.start_spread);
    None for every body of a model that ran no multi-start phase."""
    if model.starts is None:
        return [None] * model.knots_xy.shape[1]
    knots, losses, kept = model.starts
    per_problem = losses.shape[1]
    mine, best = losses[p], kept[p]
    limit = float(mine[best]) * (1.0 + float(cfg.output.start_tolerance))
    near = [s for s in range(per_problem) if s != best and bool(torch.isfinite(mine[s])) and float(mine[s]) <= limit]
    compared = [p * per_problem + s for s in (best, *near)]  # the kept start first
    curves = centrelines(knots[compared], int(cfg.output.points))[0].cpu().numpy()
    return [start_spread(curves[0, i], list(curves[1:, i])) for i in range(curves.shape[1])]


def _check(readout: _Readout, problem: _Problem, held: torch.Tensor | None, cfg: DictConfig) -> None:
    """Each record's own loss (the mean squared residual where its rendering is) and the checks of
    checks.py, with "suspect": whether they say the spline is probably wrong."""
    everyone = readout.bodies if held is None else torch.cat([readout.bodies, held])
    owns = everyone > cfg.output.own_pixels_threshold * everyone.amax(dim=(-2, -1), keepdim=True)
    residual = problem.target[0] - readout.render
    empty = ~owns.any(dim=0)  # no body rendered: the residual there is the noise
    noise = float((residual[empty] ** 2).mean()) if empty.any() else float((residual**2).mean())
    residual = residual.cpu().numpy()
    inits = [np.asarray(rec["points"], dtype=np.float64) for rec in problem.records]
    unexplained = unexplained_fractions(
        inits, readout.records, residual, problem.polarity, noise, float(cfg.groups.reach)
    )
    for i, rec in enumerate(readout.records):
        own_loss = float((residual[owns[i].cpu().numpy()] ** 2).mean()) if owns[i].any() else None
        rec["loss"] = own_loss
        rec["loss_ratio"] = loss_ratio(own_loss, noise)
        others = [r["points"] for j, r in enumerate(readout.records) if j != i]
        rec["shared"] = shared_fraction(rec["points"], rec["widths"], others)
        rec["unexplained"] = unexplained[i]
        rec["posture_change"] = posture_change(inits[i], rec["points"])
        rec["suspect"] = is_suspect(rec, cfg.flag)


def _restart_suspects(
    image: np.ndarray,
    problem: _Problem,
    readout: _Readout,
    scene: dict[str, torch.Tensor],
    cfg: DictConfig,
    device: torch.device,
    seed: int,
    polarity: float,
    on_step: StepCallback | None,
    unit: float | None,
) -> _Readout:
    """Fit the bodies that the checks doubt (thresholds `restart.when`) again from their inits, with
    the restart's loss weights (a posture prior) and the other bodies held where they were fitted,
    so that what they explain cannot draw the suspects; then polish the whole problem from there
    (`restart.polish`: every body and the appearance, which the first fit had fitted to its own
    bodies), and keep the polished fit if its render improves on the first fit's by the config's
    `restart.margin` without departing further from the inits' postures (a lower loss alone may
    come from two worms swapping parts). The problem's `scene` then gets the polished parameters."""
    suspects = [i for i, rec in enumerate(readout.records) if is_suspect(rec, cfg.restart.when)]
    if not suspects:
        return readout
    held = [j for j in range(len(readout.records)) if j not in suspects]
    again = _problem(image, [problem.records[i] for i in suspects], cfg, device, polarity, unit, scene)
    again.model.hold_bodies(readout.bodies[held][None])
    ids = ", ".join(str(readout.records[i]["id"]) for i in suspects)

    def on_restart_step(name: str, step: int, n_steps: int, value: float) -> None:
        on_step(f"restart: {name}", step, n_steps, value)  # the loss figure marks the restart's phases as such

    def run(fit: _Problem, phases: list, weights: dict) -> tuple[list[PhaseRecord], str | None]:
        def objective(model: SplineScene, ctx) -> dict[str, torch.Tensor]:
            return model(fit.target, fit.priors, blur=ctx.ramps.get("blur", 0.0))

        steps = None if on_step is None else on_restart_step
        history = run_phases_recorded(
            fit.model, objective, phases, weights, steps, seed=seed, bound=SplineScene.divergence
        )
        return [replace(phase, name=f"restart of {ids}: {phase.name}") for phase in history.phases], history.warning

    phases, warning = run(again, list(cfg.restart.phases), {**cfg.loss, **cfg.restart.loss})
    restarts = readout.restarts + phases
    if warning:
        return replace(readout, restarts=restarts)  # the first fit stays
    # The whole problem from the first fit's scene with the restarted bodies in place.
    combined = _problem(image, problem.records, cfg, device, polarity, unit, scene)
    with torch.no_grad():
        combined.model.knots_xy.copy_(scene["knots_xy"])
        combined.model.knots_xy[0, suspects] = again.model.knots_xy[0]
        combined.model.knots_w[0, suspects] = again.model.knots_w[0]
    phases, warning = run(combined, list(cfg.restart.polish), dict(cfg.loss))
    restarts += phases
    polished = _read_out(combined.model, [combined], cfg)[0]
    if (
        warning
        or polished.recon >= readout.recon * (1.0 - float(cfg.restart.margin))
        or _departs(readout, polished, cfg)
    ):
        return replace(readout, restarts=restarts)
    with torch.no_grad():
        for name, value in combined.model.named_parameters():
            scene[name].copy_(value)
    records = []
    for i, (rec, first) in enumerate(zip(polished.records, readout.records)):
        # The polish runs one start: the first fit's starts say how sure it could be of each body.
        rec = {**rec, "start_spread": first["start_spread"], **({"restarted": True} if i in suspects else {})}
        records.append({**rec, "suspect": is_suspect(rec, cfg.flag)})
    return replace(polished, records=records, restarts=restarts)


def _departs(first: _Readout, polished: _Readout, cfg: DictConfig) -> bool:
    """Whether the polished fit departs further from the inits' postures than the first: in sum, or
    for any one body beyond the flag's threshold (the polish moves every body, and a worm repaired
    must not cost another its shape)."""
    before = [rec["posture_change"] for rec in first.records]
    after = [rec["posture_change"] for rec in polished.records]
    limit = float(cfg.flag.posture_change)
    return sum(after) > sum(before) or any(a > max(b, limit) for a, b in zip(after, before))


@dataclass
class _Problem:
    """One problem of a fit, before it joins the others side by side."""

    records: list[dict]
    model: SplineScene  # one slice: the problem's starting scene
    target: torch.Tensor  # (1, H, W) the normalised image
    priors: dict[str, torch.Tensor]  # each (1, ...)
    offset: float  # normalised = (image - offset) / span
    span: float
    polarity: float  # +1 bright bodies, -1 dark


def _problem(
    image: np.ndarray,
    records: list[dict],
    cfg: DictConfig,
    device: torch.device,
    polarity: float,
    unit: float | None,
    start: dict[str, torch.Tensor] | None,
) -> _Problem:
    """The starting scene, target and priors of the bodies `records` on `image` (see fit_problems)."""
    normalised, offset, span = normalise_intensity(image)
    low, median, high = np.percentile(normalised, [0.5, 50, 99.5])
    amplitude = (high - median) if polarity > 0 else (median - low)
    knots, init_widths = initial_knots(records, int(cfg.model.knots))
    # Widths (input, prior, output) are the FWHM of a body's cross-section; the model uses blob radii.
    fwhm_per_radius = blob_fwhm(gaussian_profile(int(cfg.model.profile_nodes)), float(cfg.render.cut))
    if init_widths is not None:
        width = float(init_widths.max()) / fwhm_per_radius
        relative = (init_widths / fwhm_per_radius / width).clamp(0.05, 1.0)
    else:
        width = float(cfg.prior.width) / fwhm_per_radius
        # Slender bodies taper at both ends: start from sin(pi s)^e (floored at the tip ratio).
        s = torch.linspace(0.0, 1.0, knots.shape[1], dtype=torch.float64)
        taper = torch.sin(torch.pi * s).pow(float(cfg.init.taper_exponent)).clamp_min(float(cfg.init.tip_ratio))
        relative = (float(cfg.init.relative_width) * taper).expand(knots.shape[:2]).clone()
    lengths = splines.arc_length_parameters(knots, 2, n_fine=1024)[1]
    points_per_spline = int(
        np.clip(math.ceil(float(lengths.max()) * cfg.render.points_per_pixel), 16, cfg.render.max_points)
    )

    # A straight body's rendered peak is ~1.25 at its widest (see SplineScene), hence the contrast's scale.
    model = SplineScene(
        knots,
        relative,
        width,
        image.shape,
        brightness=float(median),
        contrast=polarity * float(amplitude) / 1.25,
        profile_nodes=int(cfg.model.profile_nodes),
        mix=float(cfg.init.mix),
        points_per_spline=points_per_spline,
        cut=float(cfg.render.cut),
        background_grid=background_nodes(int(cfg.model.background_grid), max(image.shape), unit),
        peak_scales_with_width=bool(cfg.render.peak_scales_with_width),
        renderer=str(cfg.render.backend),
        device=device,
        scale=unit,
    ).to(device)
    if start is not None:
        with torch.no_grad():
            for name, value in model.named_parameters():
                if name != "knots_xy" and name in start and start[name].shape == value.shape:
                    value.copy_(start[name])

    scale = model.scale
    priors = {  # per problem: (1, N) lengths, (1, 1) the ratio (against (S, N) ratios), (1,) the width
        "length_prior": (lengths / scale).to(device=device, dtype=torch.float32)[None],
        "min_width_ratio_prior": torch.tensor([[float(cfg.prior.min_width_ratio)]], device=device),
        "width_prior": torch.tensor([width / scale], device=device),
        "init_knots": (knots / scale).to(device=device, dtype=torch.float32)[None],
    }
    target = torch.as_tensor(normalised, device=device)[None]
    return _Problem(records, model, target, priors, offset, span, polarity)
