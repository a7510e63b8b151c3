"""Cells over time: each frame starts from the previous frame's fitted cells, so labels carry over;
the seeds of the new frame say where a cell divided (two seeds in one cell) or entered (a seed in
no cell); the fit drops the cells that left. Tracks follow the Cell Tracking Challenge: a label per
track, `L B E P` (label, first frame, last frame, parent label or 0), a mother's track ending the
frame before its daughters' begin."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from invrender.methods.cell_seg.fit import (
    FrameFit,
    Seeds,
    cells_from_seeds,
    detect_seeds,
    fit_frame,
    initial_background,
    seed_threshold,
)
from invrender.methods.cell_seg.model import Cells
from invrender.methods.cell_seg.windows import PolygonRenderer


@dataclass
class Division:
    mother: int
    frame: int  # the daughters' first frame
    daughters: tuple[int, int]


@dataclass
class Tracker:
    """Runs the frames in order and keeps the tracks."""

    cfg: DictConfig
    render: PolygonRenderer
    seed: int = 0
    tracks: dict[int, list[int]] = field(default_factory=dict)  # label -> [begin, end, parent]
    divisions: list[Division] = field(default_factory=list)
    previous: FrameFit | None = None
    next_label: int = 1

    def new_labels(self, n: int) -> np.ndarray:
        labels = np.arange(self.next_label, self.next_label + n, dtype=np.int64)
        self.next_label += n
        return labels

    def track_list(self) -> list[tuple[int, int, int, int]]:
        return [(label, begin, end, parent) for label, (begin, end, parent) in sorted(self.tracks.items())]

    def step(self, frame: int, image: np.ndarray, on_step=None) -> FrameFit:
        """Fit one normalised frame (H, W), number `frame` (the CTC's TTT: tracks and divisions are
        in these numbers, also for a sequence that does not start at 0), and update the tracks;
        returns the frame's fit."""
        cfg = self.cfg
        level = seed_threshold(image, cfg.seeds)
        seeds = detect_seeds(image, level, cfg.seeds, int(cfg.contour.radii))
        parents: dict[int, int] = {}
        if self.previous is None:
            background = initial_background(image, level, int(cfg.appearance.background_grid))
            start, factor = cells_from_seeds(seeds, image, background, self.new_labels(len(seeds)), cfg), 1.0
        else:
            start, parents = self._carry_over(self.previous, seeds, image)
            factor = float(cfg.tracking.steps_factor)
        fit = fit_frame(image, level, start, cfg, self.render, self.new_labels, self.seed + frame, factor, on_step)
        # A tracked cell that the fit split at a neck divided; in the first frame it is just two cells.
        parents.update({part: mother for mother, pair in fit.splits.items() if mother in self.tracks for part in pair})
        self._record(fit, frame, parents)
        self.previous = fit
        return fit

    def _carry_over(self, previous: FrameFit, seeds: Seeds, image: np.ndarray) -> tuple[Cells, dict[int, int]]:
        """The previous frame's cells, with every cell that holds two distant seeds replaced by two
        daughters and a cell added at every seed that no cell holds. Returns the cells and the
        daughters' parents."""
        cfg = self.cfg.tracking
        cells = previous.cells
        owner = self._owners(previous, seeds)
        mean_radius = cells.radii.mean(1)
        keep = np.ones(len(cells), dtype=bool)
        parents: dict[int, int] = {}
        extra: list[Cells] = []
        for i, label in enumerate(cells.labels):
            held = np.flatnonzero(owner == i)
            if len(held) < 2:
                continue
            points = seeds.centres[held]
            gaps = np.linalg.norm(points[:, None] - points[None], axis=-1)
            a, b = np.unravel_index(gaps.argmax(), gaps.shape)
            if gaps[a, b] < float(cfg.min_division_distance) * mean_radius[i]:
                continue
            pair = Seeds(points[[a, b]], seeds.radii[held[[a, b]]])
            daughters = cells_from_seeds(pair, image, cells.background, self.new_labels(2), self.cfg)
            daughters.brightness[:] = cells.brightness[i]
            extra.append(daughters)
            parents.update({int(d): int(label) for d in daughters.labels})
            keep[i] = False
        newcomers = Seeds(seeds.centres[owner < 0], seeds.radii[owner < 0])
        if len(newcomers):
            extra.append(
                cells_from_seeds(newcomers, image, cells.background, self.new_labels(len(newcomers)), self.cfg)
            )
        kept = cells.subset(keep)
        merged = kept.joined(*extra)
        return merged, parents

    def _owners(self, previous: FrameFit, seeds: Seeds) -> np.ndarray:
        """(M,) the index of the previous cell each seed lies in (its label image at the seed, else the
        nearest centre within `max_shift` mean radii), -1 for none."""
        cells = previous.cells
        if len(cells) == 0 or len(seeds) == 0:
            return np.full(len(seeds), -1)
        height, width = previous.labels.shape
        rows = np.clip(np.round(seeds.centres[:, 1]).astype(int), 0, height - 1)
        cols = np.clip(np.round(seeds.centres[:, 0]).astype(int), 0, width - 1)
        index_of = {int(label): i for i, label in enumerate(cells.labels)}
        under = np.array([index_of.get(int(label), -1) for label in previous.labels[rows, cols]])
        distance = np.linalg.norm(seeds.centres[:, None] - cells.centres[None], axis=-1)  # (M, N)
        nearest = distance.argmin(1)
        close = (
            distance[np.arange(len(seeds)), nearest]
            <= float(self.cfg.tracking.max_shift) * cells.radii.mean(1)[nearest]
        )
        return np.where(under >= 0, under, np.where(close, nearest, -1))

    def _record(self, fit: FrameFit, frame: int, parents: dict[int, int]) -> None:
        """Extend the tracks of the cells in `fit`; a division with only one daughter left after the
        fit is no division: that daughter continues its mother's track."""
        present = set(int(label) for label in fit.cells.labels)
        by_mother: dict[int, list[int]] = {}
        for daughter, mother in parents.items():
            by_mother.setdefault(mother, []).append(daughter)
        for mother, daughters in by_mother.items():
            alive = [d for d in daughters if d in present]
            if len(alive) == 1:
                fit.labels[fit.labels == alive[0]] = mother
                fit.cells.labels[fit.cells.labels == alive[0]] = mother
                present = (present - {alive[0]}) | {mother}
                parents.pop(alive[0])
            elif len(alive) == 2:
                self.divisions.append(Division(mother, frame, (alive[0], alive[1])))
        for label in present:
            if label in self.tracks:
                self.tracks[label][1] = frame
            else:
                self.tracks[label] = [frame, frame, parents.get(label, 0)]
