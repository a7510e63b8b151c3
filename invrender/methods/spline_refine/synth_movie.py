"""Synthetic time-lapses of crawling bodies, with labels and a detector's init for every frame.

Each body keeps its shape (length, widths, wave) and crawls: its undulation wave travels along it,
it moves along its own axis and turns slowly, and it reverses when it would leave the frame.
The imaging (background, contrast, blur, noise level) is the same for the whole movie; the noise
is new in every frame. A few times per movie the recording drops frames (`DROPPED` frames pass
between two frames), so the bodies move and change posture much more than usual between those
two frames: a propagated fit can lose them there, and must find them again.

The detector's init of a frame is its label rotated by a random angle (sd `DETECTOR_ROTATION`)
and moved by `DETECTOR_SHIFT` px in a random direction, every INIT_STRIDE-th point kept (synth.py): a
detector that finds every body roughly, as used for the robustness study (synth.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from invrender.core.geometry.spline_io import write_splines
from invrender.core.io import write_tiff
from invrender.methods.spline_refine.synth import (
    INIT_POINTS,
    body_shape,
    displace,
    draw_imaging,
    render_frame,
    rotate,
    write_dataset_record,
)

SPEED = (0.3, 0.8)  # px per frame along the body's axis
WAVE_PERIOD = 40.0  # frames for one undulation wave to pass
TURN = 0.01  # rad per frame, at most
DROPS = 3  # times per movie that frames are dropped
DROPPED = 12  # frames lost at each drop
DETECTOR_ROTATION = 6.0  # degrees, sd
DETECTOR_SHIFT = 4.0  # px


def make_movie(rng: np.random.Generator, n_bodies: int, frames: int, size: int = 128):
    """`(frames, size, size)` float32 frames and their labels (a list per frame of
    `{"points": (100, 2), "widths": (100,)}`), and the frames after which frames were dropped."""
    drops = set(rng.choice(np.arange(1, frames), size=min(DROPS, frames - 1), replace=False).tolist())
    times = np.cumsum([0] + [1 + (DROPPED if f in drops else 0) for f in range(1, frames)])
    tracks = [_crawl(rng, size, int(times[-1]) + 1) for _ in range(n_bodies)]
    imaging = draw_imaging(rng, size)
    stack, labels = [], []
    for t in times:
        bodies = [track[t] for track in tracks]
        stack.append(render_frame(rng, bodies, size, imaging))
        labels.append(bodies)
    return np.stack(stack), labels, sorted(drops)


def _crawl(rng: np.random.Generator, size: int, steps: int) -> list[dict]:
    """One body's labels at every time step."""
    shape = body_shape(rng, size)
    margin = shape.width_max + 2.0
    speed = rng.uniform(*SPEED) * rng.choice([-1.0, 1.0])
    turn = rng.uniform(-TURN, TURN)
    angle = 0.0
    start = shape.centreline()
    start = start - start.mean(axis=0)
    centre = rng.uniform(margin - start.min(axis=0), size - 1 - margin - start.max(axis=0))
    track = []
    for t in range(steps):
        points = shape.centreline(shape.phase - 2 * np.pi * t / WAVE_PERIOD)
        points = rotate(points, np.degrees(angle)) - points.mean(axis=0)
        axis = points[-1] - points[0]
        step = speed * axis / max(np.linalg.norm(axis), 1e-9)
        placed = points + centre + step
        if _outside(placed, margin, size):  # reverse rather than leave
            speed = -speed
            placed = points + centre - step
        placed = placed + _push_inside(placed, margin, size)  # a posture change can reach the border
        centre = placed.mean(axis=0)
        angle += turn
        track.append({"points": placed, "widths": shape.widths})
    return track


def _outside(points: np.ndarray, margin: float, size: int) -> bool:
    return bool(points.min() < margin or points.max() > size - 1 - margin)


def _push_inside(points: np.ndarray, margin: float, size: int) -> np.ndarray:
    """The shift [x, y] that brings `points` within `margin` of the image's border, 0 if inside."""
    low = np.maximum(margin - points.min(axis=0), 0.0)
    high = np.minimum(size - 1 - margin - points.max(axis=0), 0.0)
    return low + high


def detector_init(rng: np.random.Generator, points: np.ndarray) -> np.ndarray:
    """A detector's rough init of a label: rotated, moved, subsampled."""
    moved = displace(rotate(points, rng.normal(0.0, DETECTOR_ROTATION)), DETECTOR_SHIFT, rng)
    return moved[INIT_POINTS]


def write_spline_movie(out_dir: str | os.PathLike, bodies: int, frames: int, size: int = 128, seed: int = 0) -> None:
    """Write `movie.tif` (frames, y, x), `labels/movie.json`, the detector's inits of every frame
    `inits/detector/movie.json`, the first frame's alone `inits/first/movie.json`, and
    `dataset.json` (with the frames after which frames were dropped)."""
    out = Path(out_dir)
    movie_seed, detector_seed = np.random.SeedSequence(seed).spawn(2)
    stack, labels, drops = make_movie(np.random.default_rng(movie_seed), bodies, frames, size)
    write_tiff(out / "movie.tif", stack, axes="TYX")
    records = [[{"id": i, **body} for i, body in enumerate(frame)] for frame in labels]
    write_splines(out / "labels" / "movie.json", records, image="movie.tif")
    rng = np.random.default_rng(detector_seed)
    inits = [
        [{"id": i, "points": detector_init(rng, body["points"]), "widths": None} for i, body in enumerate(frame)]
        for frame in labels
    ]
    write_splines(out / "inits" / "detector" / "movie.json", inits, image="movie.tif")
    write_splines(out / "inits" / "first" / "movie.json", inits[:1], image="movie.tif")
    detector = {"rotation_sd_degrees": DETECTOR_ROTATION, "shift_px": DETECTOR_SHIFT}
    dropped = {"dropped_after": [d - 1 for d in drops], "dropped_frames": DROPPED}
    write_dataset_record(out, __name__, bodies, frames, size, seed, **dropped, detector=detector)
