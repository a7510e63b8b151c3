"""Fitting the cells of one frame: seeds from the image, then rounds of rendering-based fitting in
which cells that explain no signal are dropped and signal that no cell explains becomes new cells."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from omegaconf import DictConfig
from scipy import ndimage

from invrender.core.optim.divergence import Bound, far_outside, too_wide
from invrender.core.optim.phases import PhaseRecord, run_phases_recorded
from invrender.methods.cell_seg.model import Cells, CellScene
from invrender.methods.cell_seg.windows import PolygonRenderer

LabelSource = Callable[[int], np.ndarray]  # n -> n fresh track labels


#: What the objective returns for the loss registry: the scene's quantities and the frame.
QUANTITIES = frozenset({"render", "coverage", "log_radii", "target"})


@dataclass
class Seeds:
    """Candidate cells: centres (M, 2) `[x, y]` px and their outlines' radii (M, R) px."""

    centres: np.ndarray
    radii: np.ndarray

    def __len__(self) -> int:
        return len(self.radii)


def seed_threshold(image: np.ndarray, cfg: DictConfig) -> float:
    """The foreground level of a normalised frame: Otsu's or Li's threshold of the smoothed frame,
    or the number the config gives."""
    from skimage import filters

    rule = cfg.threshold
    if not isinstance(rule, str):
        return float(rule)
    smooth = ndimage.gaussian_filter(image, float(cfg.smooth))
    if rule == "otsu":
        return float(filters.threshold_otsu(smooth))
    if rule == "li":
        return float(filters.threshold_li(smooth))
    raise ValueError(f"seeds.threshold {rule!r}: expected otsu, li or a number")


def detect_seeds(image: np.ndarray, level: float, cfg: DictConfig, n_radii: int, strictness: float = 1.0) -> Seeds:
    """Where cells start, by `cfg.method` (`strictness` scales the blob threshold or the level):

    log: blobs of the Laplacian of Gaussian over scales min_sigma..max_sigma px (scikit-image's
        blob_log; `blob_threshold` the smallest response, in normalised intensity), each a circle of
        radius sqrt(2) sigma. Finds dim cells next to bright ones, since it needs no global level.
    distance: the h-maxima of the distance transform of the smoothed image above `level`: one seed
        per maximum that rises `h` px above the saddle to any other; each seed's outline starts as
        its region of the watershed of the distance transform.
    """
    from skimage.feature import blob_log
    from skimage.measure import label, regionprops
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    if cfg.method == "log":
        blobs = blob_log(
            image,
            min_sigma=float(cfg.min_sigma),
            max_sigma=float(cfg.max_sigma),
            num_sigma=int(cfg.num_sigma),
            threshold=float(cfg.blob_threshold) * strictness,
            overlap=float(cfg.overlap),
            exclude_border=False,
        ).reshape(-1, 3)
        radii = np.repeat(np.sqrt(2) * blobs[:, 2:3], n_radii, axis=1)
        return Seeds(blobs[:, [1, 0]].astype(np.float64), radii)
    foreground = ndimage.gaussian_filter(image, float(cfg.smooth)) > level * strictness
    distance = ndimage.distance_transform_edt(foreground)
    peaks = label(h_maxima(distance, float(cfg.h)) & (distance >= float(cfg.min_radius)))
    regions = regionprops(peaks, intensity_image=distance)
    centres = np.array([r.centroid[::-1] for r in regions], dtype=np.float64).reshape(-1, 2)
    basins = watershed(-distance, peaks, mask=foreground)
    return Seeds(centres, star_radii(basins, np.array([r.label for r in regions]), centres, n_radii))


def star_radii(
    labels: np.ndarray, which: np.ndarray, centres: np.ndarray, n_radii: int, step: float = 0.5
) -> np.ndarray:
    """(N, R) radii of star-convex outlines of the regions `which` (N,) of a label image (H, W), seen
    from `centres` (N, 2) `[x, y]`: along each of R rays, the distance to the first pixel outside."""
    if len(which) == 0:
        return np.zeros((0, n_radii))
    angle = np.arange(n_radii) * (2 * np.pi / n_radii)
    steps = np.arange(1, int(np.hypot(*labels.shape) / step) + 1) * step
    radii = np.empty((len(which), n_radii))
    for i, (label, centre) in enumerate(zip(which, centres)):  # a pass per region, rays vectorised
        xs = np.rint(centre[0] + np.cos(angle)[:, None] * steps).astype(int)
        ys = np.rint(centre[1] + np.sin(angle)[:, None] * steps).astype(int)
        inside = (xs >= 0) & (xs < labels.shape[1]) & (ys >= 0) & (ys < labels.shape[0])
        own = inside & (labels[ys.clip(0, labels.shape[0] - 1), xs.clip(0, labels.shape[1] - 1)] == label)
        first_out = np.argmin(own, axis=1)  # the first step outside (own is True before it)
        radii[i] = np.maximum(steps[first_out] - 0.5 * step, 0.5 * step)
    return radii


def cells_from_seeds(
    seeds: Seeds, image: np.ndarray, background: np.ndarray, labels: np.ndarray, cfg: DictConfig
) -> Cells:
    """Cells at the seeds, as bright as the smoothed frame at their centres above `background`."""
    smooth = ndimage.gaussian_filter(image, float(cfg.seeds.smooth))
    rows = np.clip(np.round(seeds.centres[:, 1]).astype(int), 0, image.shape[0] - 1)
    cols = np.clip(np.round(seeds.centres[:, 0]).astype(int), 0, image.shape[1] - 1)
    brightness = np.maximum(smooth[rows, cols] - float(np.median(background)), 0.05)
    halo = cfg.appearance.halo
    return Cells(
        labels,
        seeds.centres.copy(),
        seeds.radii.copy(),
        brightness,
        background,
        float(cfg.appearance.sigma),
        float(halo.sigma),
        float(halo.weight),
    )


def initial_background(image: np.ndarray, level: float, grid: int) -> np.ndarray:
    """A flat background grid (grid, grid) at the median of the pixels below the seed level."""
    below = image[image <= level]
    return np.full((grid, grid), float(np.median(below)) if below.size else 0.0)


@dataclass
class FrameFit:
    cells: Cells
    labels: np.ndarray  # (H, W) int64 instance labels (the cells' track labels)
    render: np.ndarray  # (H, W) the model of the normalised frame
    phases: list[PhaseRecord] = field(default_factory=list)
    dropped: int = 0  # cells removed for explaining no signal
    merged: int = 0  # pairs of cells joined for lack of a boundary between them
    added: int = 0  # cells added where signal was unexplained
    splits: dict[int, tuple[int, int]] = field(default_factory=dict)  # cell label -> the labels of its two parts
    warning: str | None = None  # the fit diverged: the cells are its last finite state, no later round ran


def scaled_phases(phases, factor: float) -> list[dict]:
    """The config's phases with their step counts scaled (frames after the first need fewer)."""
    from invrender.config import to_plain

    return [{**p, "steps": max(1, int(round(int(p["steps"]) * factor)))} for p in to_plain(phases)]


def fit_frame(
    image: np.ndarray,
    level: float,
    cells: Cells,
    cfg: DictConfig,
    render: PolygonRenderer,
    new_labels: LabelSource,
    seed: int = 0,
    steps_factor: float = 1.0,
    on_step=None,
) -> FrameFit:
    """Fit `cells` to a normalised frame (H, W) with foreground `level` (`seed_threshold`) in up to
    `cfg.rounds` rounds; between rounds, drop the cells that explain no signal, join cells with no
    boundary between them, split cells at a neck and add cells where the residual shows signal."""
    target = torch.from_numpy(image.astype(np.float64))[None]
    result = FrameFit(cells, np.zeros(image.shape, dtype=np.int64), image * 0)
    bound = within_frame(image.shape)

    def objective(model: CellScene, context) -> dict:
        return {**model(), "target": target}

    for round_index in range(int(cfg.rounds)):
        torch.manual_seed(seed + round_index)
        scene = CellScene(cells, image.shape, render, int(cfg.contour.harmonics), float(cfg.contour.max_radius))
        refit = float(cfg.refit_steps_factor) if round_index > 0 else 1.0
        history = run_phases_recorded(
            scene,
            objective,
            scaled_phases(cfg.phases, steps_factor * refit),
            dict(cfg.loss),
            on_step,
            seed=seed + round_index,
            select_by="recon_mse",
            bound=bound,
        )
        result.phases += history.phases
        result.warning = history.warning
        last = round_index == int(cfg.rounds) - 1 or history.warning is not None  # a diverged fit goes no further
        cells, (labels, areas) = scene.cells(), scene.labels_and_areas()
        with torch.no_grad():
            rendered = scene()["render"][0].numpy()
        revised = revise_cells(
            cells,
            labels,
            areas,
            image,
            image - rendered,
            level,
            cfg,
            new_labels,
            final=last,
        )
        result.dropped += revised.dropped
        result.merged += revised.merged
        result.added += revised.added
        result.splits.update(revised.splits)
        if revised.cells is cells or last:
            kept = revised.cells.labels
            result.cells, result.labels, result.render = (
                revised.cells,
                np.where(np.isin(labels, kept), labels, 0),
                rendered,
            )
            break
        cells = revised.cells
    return result


def within_frame(shape: tuple[int, int]) -> Bound:
    """The fit's divergence bound (core/optim/divergence.py) on a frame of `shape` (H, W): cell
    centres far outside it, or a PSF (either Gaussian) far wider than it."""
    size = (shape[1] - 1.0, shape[0] - 1.0)  # pixel centres [x, y] span [0, W - 1] x [0, H - 1]

    def bound(scene: CellScene) -> str | None:
        with torch.no_grad():
            sigmas = torch.cat([scene.log_sigma, scene.log_halo_sigma]).exp()
            return far_outside(scene.centres, size, "cell centres") or too_wide(sigmas, size, "the PSF sigma")

    return bound


def revise_cells(
    cells: Cells,
    labels: np.ndarray,
    areas: np.ndarray,
    image: np.ndarray,
    residual: np.ndarray,
    level: float,
    cfg: DictConfig,
    new_labels: LabelSource,
    final: bool,
) -> FrameFit:
    """The cells for the next round: without those that explain no signal and, unless `final`, with
    touching cells that have no boundary between them joined, cells with a neck split in two, and new
    cells where the residual shows signal that no cell explains. Returns `cells` itself when nothing
    changed."""
    keep = explains_signal(cells, labels, areas, cfg.prune)
    revised = cells.subset(keep)
    labels = np.where(np.isin(labels, revised.labels), labels, 0)
    merged, splits, found = 0, {}, Seeds(np.zeros((0, 2)), np.zeros((0, cells.radii.shape[1])))
    if not final:  # a join, a split or a new cell needs another round of fitting
        if cfg.merge.contrast is not None:
            revised, merged = merge_touching(revised, labels, image, cfg)
        if cfg.split.h is not None:
            revised, splits = split_necked(revised, labels, cfg.split, new_labels)
        if cfg.split.valley is not None:
            revised, more = split_at_valley(revised, labels, image, cfg, new_labels)
            splits.update(more)
        found = detect_seeds(
            np.where(labels > 0, 0.0, residual), level, cfg.seeds, cells.radii.shape[1], float(cfg.residual.level)
        )
    if keep.all() and merged == 0 and not splits and len(found) == 0:
        return FrameFit(cells, labels, residual)
    fresh = cells_from_seeds(found, residual, np.zeros(1), new_labels(len(found)), cfg)
    return FrameFit(
        revised.joined(fresh),
        labels,
        residual,
        dropped=int((~keep).sum()),
        merged=merged,
        added=len(found),
        splits=splits,
    )


def split_necked(
    cells: Cells, labels: np.ndarray, cfg: DictConfig, new_labels: LabelSource
) -> tuple[Cells, dict[int, tuple[int, int]]]:
    """Split every cell whose region in the label image has a neck: two maxima of its distance
    transform that rise `h` px above the saddle between them (two touching cells that one contour
    took, or a cell dividing). The parts start as the watershed basins of the two highest maxima.
    Returns the cells and {old label: (new label, new label)}."""
    from skimage.measure import label, regionprops
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    halves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, box in enumerate(ndimage.find_objects(labels, max_label=int(cells.labels.max(initial=0)))):
        if box is None:
            continue
        index = np.flatnonzero(cells.labels == i + 1)
        if len(index) == 0:
            continue
        region = np.pad(labels[box] == i + 1, 1)
        distance = ndimage.distance_transform_edt(region)
        peaks = label(h_maxima(distance, float(cfg.h)) & (distance >= float(cfg.min_radius)))
        if peaks.max() < 2:
            continue
        highest = np.argsort([-r.intensity_max for r in regionprops(peaks, intensity_image=distance)])[:2] + 1
        markers = np.where(np.isin(peaks, highest), peaks, 0)
        basins = watershed(-distance, markers, mask=region)
        offset = np.array([box[1].start - 1, box[0].start - 1], dtype=np.float64)
        centres = np.array([np.argwhere(basins == b).mean(0)[::-1] for b in highest]) + offset
        halves[index[0]] = centres, star_radii(basins, highest, centres - offset, cells.radii.shape[1])
    return split_cells(cells, halves, new_labels)


def split_at_valley(
    cells: Cells, labels: np.ndarray, image: np.ndarray, cfg: DictConfig, new_labels: LabelSource
) -> tuple[Cells, dict[int, tuple[int, int]]]:
    """Split every large cell whose region looks like two touching nuclei that one contour took (a
    seed was missing), which a neck in the outline often does not show. Candidates are the cells of
    at least `split.min_area_ratio` times the median area; their region's pixels are cut in two by
    2-means (Lloyd's, from the ends of the major axis). The cell becomes two, each starting as its
    half, when the smoothed intensity (above the background) shows either
    - a valley: along the middle half of the segment between the halves' centres it falls below
      `1 - split.valley` of the dimmer centre, or
    - a step: the dimmer half's mean is below `1 - split.step` of the brighter's (one cell has
      one brightness in the model, so two of different brightness are two), or when the cell is
      `split.max_area_ratio` times the median area or larger.
    Returns the cells and {old label: (new label, new label)}."""
    smooth, background = smoothed_and_background(image, labels, cfg)
    areas = np.bincount(labels.ravel(), minlength=int(cells.labels.max(initial=0)) + 1)[cells.labels]
    if len(cells) == 0 or not (areas > 0).any():
        return cells, {}
    median = np.median(areas[areas > 0])
    large = areas >= float(cfg.split.min_area_ratio) * median
    split: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in np.flatnonzero(large):
        ys, xs = np.nonzero(labels == cells.labels[k])
        points = np.stack([xs, ys], axis=1).astype(np.float64)
        halves = two_means(points)
        if halves.min() == halves.max():
            continue
        centres = np.array([points[halves == h].mean(0) for h in (0, 1)])
        t = np.linspace(0.25, 0.75, 25)[:, None]
        line = centres[0] + t * (centres[1] - centres[0])
        middle = ndimage.map_coordinates(smooth, [line[:, 1], line[:, 0]], order=1) - background
        ends = ndimage.map_coordinates(smooth, [centres[:, 1], centres[:, 0]], order=1) - background
        means = np.array([smooth[ys[halves == h], xs[halves == h]].mean() for h in (0, 1)]) - background
        valley = middle.min() < (1.0 - float(cfg.split.valley)) * ends.min()
        step = means.min() < (1.0 - float(cfg.split.step)) * means.max()
        if not (valley or step or areas[k] >= float(cfg.split.max_area_ratio) * median):
            continue
        halves_image = np.zeros(labels.shape, dtype=np.int64)
        halves_image[ys, xs] = halves + 1
        split[k] = centres, star_radii(halves_image, np.array([1, 2]), centres, cells.radii.shape[1])
    return split_cells(cells, split, new_labels)


def split_cells(
    cells: Cells, halves: dict[int, tuple[np.ndarray, np.ndarray]], new_labels: LabelSource
) -> tuple[Cells, dict[int, tuple[int, int]]]:
    """Replace each cell k of `halves` by two cells with fresh labels (in the order of `halves`),
    centres (2, 2) `[x, y]` and radii (2, R) px, its brightness and PSF kept. Returns the cells
    (the unsplit ones first) and {old label: (new label, new label)}."""
    keep = np.ones(len(cells), dtype=bool)
    parts: list[Cells] = []
    splits: dict[int, tuple[int, int]] = {}
    for k, (centres, radii) in halves.items():
        two = replace(cells.subset(np.array([k, k])), labels=new_labels(2), centres=centres, radii=radii)
        parts.append(two)
        splits[int(cells.labels[k])] = (int(two.labels[0]), int(two.labels[1]))
        keep[k] = False
    return cells.subset(keep).joined(*parts), splits


def smoothed_and_background(image: np.ndarray, labels: np.ndarray, cfg: DictConfig) -> tuple[np.ndarray, float]:
    """The frame (H, W) smoothed as the seeds see it (`seeds.smooth` px) and the median of that
    outside the cells of the label image (0 when the cells cover everything)."""
    smooth = ndimage.gaussian_filter(image, float(cfg.seeds.smooth))
    return smooth, float(np.median(smooth[labels == 0])) if (labels == 0).any() else 0.0


def two_means(points: np.ndarray, iterations: int = 20) -> np.ndarray:
    """(N,) 0/1: the 2-means clustering of points (N, 2) by Lloyd's iterations, started from the two
    extremes of the points along their principal axis."""
    centred = points - points.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    along = centred @ axis
    means = points[[along.argmin(), along.argmax()]]
    for _ in range(iterations):
        nearest = np.linalg.norm(points[:, None] - means[None], axis=-1).argmin(1)
        if nearest.min() == nearest.max():
            break
        means = np.array([points[nearest == h].mean(0) for h in (0, 1)])
    return nearest


def merge_touching(cells: Cells, labels: np.ndarray, image: np.ndarray, cfg: DictConfig) -> tuple[Cells, int]:
    """Join pairs of touching cells whose shared boundary is nearly as bright as the dimmer of the
    two (above the background): two cells of one brightness with no dark line between them render
    exactly as one, so the image gives no reason to split them. Each cell joins at most once per
    call; the joined outline is the union seen from its centroid. Returns the cells and the number
    of joins."""
    if len(cells) < 2:
        return cells, 0
    smooth, background = smoothed_and_background(image, labels, cfg)
    size = int(labels.max()) + 1
    interior = ndimage.median(smooth, labels, index=np.arange(size))
    # Neighbouring pixels (right and down) with two different cell labels: the shared boundaries.
    pairs, values = [], []
    for a, b, va, vb in (
        (labels[:, :-1], labels[:, 1:], smooth[:, :-1], smooth[:, 1:]),
        (labels[:-1], labels[1:], smooth[:-1], smooth[1:]),
    ):
        touching = (a != b) & (a > 0) & (b > 0)
        low, high = np.minimum(a, b)[touching], np.maximum(a, b)[touching]
        pairs.append(low * size + high)
        values.append(0.5 * (va + vb)[touching])
    pairs, values = np.concatenate(pairs), np.concatenate(values)
    if pairs.size == 0:
        return cells, 0
    keys, inverse, counts = np.unique(pairs, return_inverse=True, return_counts=True)
    boundary = np.bincount(inverse, weights=values) / counts
    first, second = keys // size, keys % size
    contrast = (boundary - background) / np.maximum(np.minimum(interior[first], interior[second]) - background, 1e-6)
    joined, used = labels.copy(), set()
    for k in np.argsort(-contrast):
        if contrast[k] < float(cfg.merge.contrast) or counts[k] < float(cfg.merge.min_boundary):
            break
        a, b = int(first[k]), int(second[k])
        if a in used or b in used:
            continue
        used |= {a, b}
        joined[joined == b] = a
    if not used:
        return cells, 0
    gone = np.array([label in used and not (joined == label).any() for label in cells.labels])
    kept = cells.subset(~gone)
    grown = np.isin(kept.labels, list(used))
    for i in np.flatnonzero(grown):
        ys, xs = np.nonzero(joined == kept.labels[i])
        kept.centres[i] = [xs.mean(), ys.mean()]
    kept.radii[grown] = star_radii(joined, kept.labels[grown], kept.centres[grown], cells.radii.shape[1])
    return kept, int(gone.sum())


def explains_signal(cells: Cells, labels: np.ndarray, areas: np.ndarray, cfg: DictConfig) -> np.ndarray:
    """(N,) bool: the cells worth keeping, given the label image and their `areas` (N,) inside the
    image. A cell goes when it is tiny, much dimmer than the median cell, or when other cells take
    most of its area in the label image."""
    if len(cells) == 0:
        return np.zeros(0, dtype=bool)
    owned = np.bincount(labels.ravel(), minlength=int(cells.labels.max()) + 1)[cells.labels]
    bright = cells.brightness >= float(cfg.min_brightness) * np.median(cells.brightness)
    return (areas >= float(cfg.min_area)) & bright & (owned >= (1.0 - float(cfg.max_overlap)) * areas)
