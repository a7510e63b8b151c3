"""A synthetic 2D fluorescence time-lapse of moving, dividing nuclei with perfect ground truth, in the
Cell Tracking Challenge (CTC) layout: for tests and benchmarks of cell segmentation and tracking.

An independent model, deliberately unlike the contour-plus-learned-appearance model that `cell-seg`
fits. Each nucleus is a smooth star-convex shape: an ellipse (mean radius 7-12 px) whose radius is
modulated by a few low Fourier harmonics, slowly rotating and deforming. Nuclei move by a smoothed
random walk (about 1 px per frame), feel a soft repulsion from each other and from the frame's
border, and are separated exactly after every step, so they never overlap but may touch. Some
nuclei divide: they round up and brighten (condensed chromatin) in the frames before, then their
track ends and two daughters start in the next frame, each of about half the mother's area plus
some, placed along a random axis with a gap of 0-1.5 px (the hard case for a segmenter); they then
grow back and move apart.

Imaging: the exact area of every nucleus in every pixel (the polygon-coverage renderer) times its
own brightness and a smooth internal texture, a little out-of-focus haze, an uneven background, a
Gaussian PSF, then shot (Poisson) and read (Gaussian) noise of a camera, written as uint16 counts.
Ground truth: a pixel belongs to the nucleus covering most of it, if that one covers at least half.

Layout (T frames, 3-digit times, as in the CTC 2D data sets):

    out/01/tTTT.tif                     raw frames, uint16 (size, size)
    out/01_GT/SEG/man_segTTT.tif        instance labels, uint16, every frame
    out/01_GT/TRA/man_trackTTT.tif      the same labels (label = track id)
    out/01_GT/TRA/man_track.txt         one `L B E P` line per track: label, first and last frame,
                                        parent label or 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt, gaussian_filter, map_coordinates

from invrender.core.io import write_tiff
from invrender.core.render.polygon2d import render_polygons
from invrender.methods.cell_seg.ctc import write_label_frames, write_tracks

#: Vertices of each nucleus outline (about 1 px apart at the largest radius).
VERTICES = 64

# Shape, in pixels (radii) and radians.
RADIUS = (7.0, 12.0)  # mean radius of a grown nucleus
ELLIPTICITY = (0.0, 0.25)  # semi-axes R (1 + e) and R / (1 + e)
HARMONICS = (3, 4, 5)  # orders of the radial modulation on top of the ellipse
HARMONIC_AMPLITUDE = 0.06  # largest |coefficient| of each harmonic (relative radius)
HARMONIC_DRIFT = 0.004  # std of the per-frame random walk of each coefficient
SPIN = 0.02  # std of the rotation rate, rad / frame
RELAX = 0.15  # fraction of the way to its target radius / ellipticity a nucleus goes per frame

# Motion, in pixels per frame.
SPEED = 0.7  # std of each velocity component: speeds of about 1 px / frame
PERSISTENCE = 0.8  # velocity autocorrelation from one frame to the next (the smoothing)
MAX_SPEED = 2.0
REPULSION_RANGE = 4.0  # px of gap below which nuclei (and the border) push each other away
REPULSION = 0.4  # px / frame of push at contact
BORDER = 2.0  # px kept free between any outline and the frame's edge
PLACEMENT_GAP = 3.0  # px, the smallest gap between nuclei in frame 0
PLACEMENT_TRIES = 2000
SEPARATION_ITERATIONS = 50

# Division.
MITOSIS_FRAMES = 3  # frames of rounding-up and brightening before the mother's track ends
MITOSIS_ROUNDING = 0.6  # fraction of the ellipticity and harmonics a mother loses by the end
MITOSIS_SHRINK = 0.1  # fraction of radius it loses (condensed chromatin)
MITOSIS_GLOW = 0.25  # relative extra brightness at the end of mitosis, decays in the daughters
DAUGHTER_EXTRA_AREA = (0.05, 0.2)  # each daughter has area (1 + this) / 2 of the mother's
DAUGHTER_GAP = (0.0, 1.5)  # px between the two daughters in their first frame
DAUGHTER_ELLIPTICITY = (0.1, 0.3)  # daughters start elongated across the division axis
DAUGHTER_PUSH = 0.4  # px / frame apart along the division axis in their first frames
DAUGHTER_GROWN = (0.85, 1.0)  # target radius of a daughter, fraction of the mother's

# Imaging, in units of the brightest possible nucleus (intensity 1) unless said otherwise.
BRIGHTNESS = (0.5, 1.0)
TEXTURE_AMPLITUDE = 0.15  # the texture stays within +-15 %
TEXTURE_SCALE = 2.0  # px, correlation length of the texture (blur of white noise)
TEXTURE_SIZE = 64  # px, side of each nucleus's texture patch (its own coordinates)
BLEACHING = (0.0, 0.01)  # relative loss of brightness per frame
BACKGROUND = (0.04, 0.08)
GRADIENT = (0.0, 0.04)  # background change across the frame
WOBBLE = 0.005  # std of the low-frequency background variation
WOBBLE_SCALE = 1 / 8  # its correlation length, fraction of the frame size
HAZE = 0.08  # out-of-focus light: this fraction of the nuclei's light, spread widely
HAZE_SIGMA = 6.0  # px
PSF_SIGMA = 1.2  # px
PHOTONS = (30.0, 60.0)  # photo-electrons at intensity 1: sets the shot noise
READ_NOISE = (2.0, 3.5)  # electrons (std)
GAIN = 10.0  # counts per electron
OFFSET = 500.0  # camera offset, counts (keeps the read noise off zero)


@dataclass
class _Nucleus:
    """State of one nucleus: lengths in px, angles in radians, times in frames."""

    label: int
    centre: np.ndarray  # (2,) [x, y]
    velocity: np.ndarray  # (2,) px / frame
    radius: float
    radius_target: float
    ellipticity: float
    ellipticity_target: float
    angle: float  # orientation of the long axis
    spin: float  # rad / frame
    harmonics: np.ndarray  # (len(HARMONICS),) relative amplitudes
    phases: np.ndarray  # (len(HARMONICS),)
    brightness: float
    texture: np.ndarray  # (TEXTURE_SIZE, TEXTURE_SIZE), mean 1, in the nucleus's own frame
    first: int  # first frame
    parent: int = 0
    mitosis: float = 0.0  # 0 interphase .. 1 the mother's last frame: rounding up
    glow: float = 0.0  # relative extra brightness (mitosis, and the daughters just after)
    push: np.ndarray = field(default_factory=lambda: np.zeros(2))  # daughters' drift apart, px / frame

    def radial(self, phi: np.ndarray) -> np.ndarray:
        """Radius (px) of the outline in the directions `phi` (rad, any shape), from the centre."""
        a = np.asarray(phi) - self.angle
        keep = 1 - MITOSIS_ROUNDING * self.mitosis
        stretch = 1 + self.ellipticity * keep
        ellipse = 1 / np.sqrt((np.cos(a) / stretch) ** 2 + (np.sin(a) * stretch) ** 2)
        wave = sum(c * np.cos(k * a + p) for k, c, p in zip(HARMONICS, self.harmonics * keep, self.phases))
        return self.radius * (1 - MITOSIS_SHRINK * self.mitosis) * ellipse * (1 + wave)

    def outline(self) -> np.ndarray:
        """The outline polygon (VERTICES, 2) `[x, y]` px, counter-clockwise in image coordinates."""
        phi = np.linspace(0.0, 2 * math.pi, VERTICES, endpoint=False)
        r = self.radial(phi)
        return self.centre + r[:, None] * np.stack([np.cos(phi), np.sin(phi)], axis=1)

    def reach(self) -> float:
        """An upper bound (px) of the outline's distance from the centre."""
        return self.radius * (1 + self.ellipticity) * (1 + np.abs(self.harmonics).sum())

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Depth (px) of `points (P, 2)` inside the outline along the ray from the centre; <= 0 outside."""
        d = points - self.centre
        return self.radial(np.arctan2(d[:, 1], d[:, 0])) - np.hypot(d[:, 0], d[:, 1])


# ---------------------------------------------------------------- geometry of pairs


def _segment_distance(points: np.ndarray, polygon: np.ndarray) -> float:
    """Smallest distance (px) from `points (P, 2)` to the edges of the closed `polygon (K, 2)`."""
    a = polygon
    ab = np.roll(polygon, -1, axis=0) - a
    ap = points[:, None, :] - a[None]
    u = np.clip((ap * ab).sum(-1) / np.maximum((ab**2).sum(-1), 1e-12), 0.0, 1.0)
    return float(np.sqrt(((ap - u[..., None] * ab) ** 2).sum(-1)).min())


def _gap(a: _Nucleus, b: _Nucleus, outline_a: np.ndarray, outline_b: np.ndarray) -> float:
    """Signed gap (px) between two nuclei: the distance between their outlines when apart, minus the
    deepest penetration of one outline's vertices into the other when they overlap."""
    depth = max(a.contains(outline_b).max(), b.contains(outline_a).max())
    if depth > 0:
        return -float(depth)
    return min(_segment_distance(outline_a, outline_b), _segment_distance(outline_b, outline_a))


def _near(a: _Nucleus, b: _Nucleus, within: float) -> bool:
    """Whether the two nuclei may be closer than `within` px (a cheap bound before the exact gap)."""
    return float(np.hypot(*(a.centre - b.centre))) < a.reach() + b.reach() + within


def _keep_inside(cell: _Nucleus, size: int) -> bool:
    """Shift `cell` so that its outline keeps BORDER px from the frame's edges; True if it moved."""
    outline = cell.outline()
    low, high = outline.min(axis=0), outline.max(axis=0)
    shift = np.maximum(BORDER - low, 0.0) - np.maximum(high - (size - 1 - BORDER), 0.0)
    cell.centre = cell.centre + shift
    return bool(np.any(shift != 0))


def _separate(cells: list[_Nucleus], size: int, fixed: frozenset[int] = frozenset()) -> None:
    """Push overlapping nuclei apart along the line between their centres until no two overlap.

    Nuclei whose labels are in `fixed` (daughters in their first frame) do not move, so their
    neighbours make room for them and the sisters keep the gap they were placed with.
    """
    for _ in range(SEPARATION_ITERATIONS):
        moved = False
        outlines = [c.outline() for c in cells]
        for i in range(len(cells)):
            for j in range(i + 1, len(cells)):
                a, b = cells[i], cells[j]
                if a.label in fixed and b.label in fixed or not _near(a, b, 0.0):
                    continue
                gap = _gap(a, b, outlines[i], outlines[j])
                if gap >= 0:
                    continue
                # A little beyond the penetration depth: the depth along the vertex rays
                # underestimates the overlap along the centre line for elongated shapes.
                d = b.centre - a.centre
                u = d / max(float(np.hypot(*d)), 1e-9)
                share = 0.0 if a.label in fixed else 1.0 if b.label in fixed else 0.5
                a.centre = a.centre - u * (0.1 - gap) * share
                b.centre = b.centre + u * (0.1 - gap) * (1 - share)
                outlines[i], outlines[j] = a.outline(), b.outline()
                moved = True
        for cell in cells:
            if cell.label not in fixed and _keep_inside(cell, size):
                moved = True
        if not moved:
            return


# ---------------------------------------------------------------- the cells' life


def _texture(rng: np.random.Generator) -> np.ndarray:
    """A smooth texture (TEXTURE_SIZE, TEXTURE_SIZE): mean 1, within +-TEXTURE_AMPLITUDE."""
    noise = gaussian_filter(rng.standard_normal((TEXTURE_SIZE, TEXTURE_SIZE)), TEXTURE_SCALE, mode="wrap")
    # tanh of about 2.5 standard deviations: a soft clip, so the texture rarely saturates.
    return 1 + TEXTURE_AMPLITUDE * np.tanh(noise / (2.5 * noise.std()))


def _new_nucleus(rng: np.random.Generator, label: int, centre: np.ndarray, radius: float, first: int) -> _Nucleus:
    ellipticity = rng.uniform(*ELLIPTICITY)
    return _Nucleus(
        label=label,
        centre=np.asarray(centre, dtype=np.float64),
        velocity=rng.normal(0.0, SPEED, 2),
        radius=radius,
        radius_target=radius,
        ellipticity=ellipticity,
        ellipticity_target=ellipticity,
        angle=rng.uniform(0.0, 2 * math.pi),
        spin=rng.normal(0.0, SPIN),
        harmonics=rng.uniform(-HARMONIC_AMPLITUDE, HARMONIC_AMPLITUDE, len(HARMONICS)),
        phases=rng.uniform(0.0, 2 * math.pi, len(HARMONICS)),
        brightness=rng.uniform(*BRIGHTNESS),
        texture=_texture(rng),
        first=first,
    )


def _place_initial(rng: np.random.Generator, cells: int, size: int) -> list[_Nucleus]:
    """`cells` nuclei at random places in frame 0, at least PLACEMENT_GAP px apart and inside."""
    placed: list[_Nucleus] = []
    for label in range(1, cells + 1):
        for _ in range(PLACEMENT_TRIES):
            cell = _new_nucleus(rng, label, np.zeros(2), rng.uniform(*RADIUS), first=0)
            margin = cell.reach() + BORDER
            if 2 * margin >= size - 1:
                continue
            cell.centre = rng.uniform(margin, size - 1 - margin, 2)
            outline = cell.outline()
            if all(
                not _near(cell, other, PLACEMENT_GAP) or _gap(cell, other, outline, other.outline()) >= PLACEMENT_GAP
                for other in placed
            ):
                placed.append(cell)
                break
        else:
            raise ValueError(
                f"could not place {cells} nuclei of radius {RADIUS[0]:g}-{RADIUS[1]:g} px in a {size}x{size} frame: "
                "use fewer cells or a larger size"
            )
    return placed


def _step(cells: list[_Nucleus], rng: np.random.Generator, size: int) -> None:
    """Advance every nucleus by one frame: velocity (smoothed random walk, repulsion from
    neighbours and the border), position, rotation, growth and shape drift."""
    outlines = [c.outline() for c in cells]
    force = [np.zeros(2) for _ in cells]
    for i in range(len(cells)):
        for j in range(i + 1, len(cells)):
            a, b = cells[i], cells[j]
            if not _near(a, b, REPULSION_RANGE):
                continue
            gap = _gap(a, b, outlines[i], outlines[j])
            if gap < REPULSION_RANGE:
                d = b.centre - a.centre
                u = d / max(float(np.hypot(*d)), 1e-9)
                push = REPULSION * (1 - max(gap, 0.0) / REPULSION_RANGE)
                force[i] -= u * push
                force[j] += u * push
    for cell, f, outline in zip(cells, force, outlines):
        # The border pushes like a neighbour: inward, once an outline comes within range of it.
        low = outline.min(axis=0) - BORDER
        high = size - 1 - BORDER - outline.max(axis=0)
        f = f + REPULSION * (np.clip(1 - low / REPULSION_RANGE, 0, 1) - np.clip(1 - high / REPULSION_RANGE, 0, 1))
        # An AR(1) velocity has std SPEED per component whatever the persistence.
        noise = rng.normal(0.0, SPEED * math.sqrt(1 - PERSISTENCE**2), 2)
        velocity = PERSISTENCE * cell.velocity + noise + f
        speed = float(np.hypot(*velocity))
        cell.velocity = velocity * min(1.0, MAX_SPEED / max(speed, 1e-9))
        cell.centre = cell.centre + cell.velocity + cell.push
        cell.push = cell.push * 0.5
        cell.spin = 0.9 * cell.spin + rng.normal(0.0, SPIN * math.sqrt(1 - 0.9**2))
        cell.angle += cell.spin
        cell.radius += RELAX * (cell.radius_target - cell.radius)
        cell.ellipticity += RELAX * (cell.ellipticity_target - cell.ellipticity)
        drift = rng.normal(0.0, HARMONIC_DRIFT, len(HARMONICS))
        cell.harmonics = np.clip(cell.harmonics + drift, -HARMONIC_AMPLITUDE, HARMONIC_AMPLITUDE)
        cell.glow *= 0.5


def _unit_area(cell: _Nucleus) -> float:
    """Area (px^2) of `cell`'s outline if its radius were 1 (the shoelace formula)."""
    saved, cell.radius = cell.radius, 1.0
    x, y = (cell.outline() - cell.centre).T
    cell.radius = saved
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _divide(
    mother: _Nucleus, labels: tuple[int, int], frame: int, rng: np.random.Generator, size: int
) -> list[_Nucleus]:
    """Two daughters of `mother` (in her last frame's state) for their first frame `frame`.

    Each has (1 + DAUGHTER_EXTRA_AREA) / 2 of the mother's area, is elongated across a random
    division axis, and they are placed along that axis, around where the mother would have moved,
    with a gap of DAUGHTER_GAP px between the two outlines.
    """
    x, y = (mother.outline() - mother.centre).T
    mother_area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    axis_angle = rng.uniform(0.0, 2 * math.pi)
    axis = np.array([math.cos(axis_angle), math.sin(axis_angle)])
    centre = mother.centre + mother.velocity
    daughters = []
    for label in labels:
        cell = _new_nucleus(rng, label, centre, 1.0, first=frame)
        cell.parent = mother.label
        cell.angle = axis_angle + math.pi / 2 + rng.normal(0.0, 0.2)
        cell.ellipticity = rng.uniform(*DAUGHTER_ELLIPTICITY)
        cell.radius = math.sqrt(mother_area * (1 + rng.uniform(*DAUGHTER_EXTRA_AREA)) / 2 / _unit_area(cell))
        cell.radius_target = float(np.clip(mother.radius_target * rng.uniform(*DAUGHTER_GROWN), *RADIUS))
        # Sisters keep their mother's brightness and its mitotic glow, which then fades.
        cell.brightness = float(np.clip(mother.brightness * rng.uniform(0.9, 1.1), *BRIGHTNESS))
        cell.glow = MITOSIS_GLOW
        cell.velocity = mother.velocity.copy()
        daughters.append(cell)
    first, second = daughters
    first.push, second.push = DAUGHTER_PUSH * axis, -DAUGHTER_PUSH * axis

    # Bisection on the distance between the centres for the drawn gap (the gap grows with it).
    target = rng.uniform(*DAUGHTER_GAP)
    low, high = 0.0, 2 * (first.reach() + second.reach()) + target

    def place(separation: float) -> float:
        first.centre = centre + axis * separation / 2
        second.centre = centre - axis * separation / 2
        return _gap(first, second, first.outline(), second.outline())

    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if place(middle) < target else (low, middle)
    place(high)
    # Move the pair together into the frame if it sticks out.
    outlines = np.concatenate([first.outline(), second.outline()])
    shift = np.maximum(BORDER - outlines.min(axis=0), 0.0) - np.maximum(outlines.max(axis=0) - (size - 1 - BORDER), 0.0)
    for cell in daughters:
        cell.centre = cell.centre + shift
    return daughters


def _division_frames(rng: np.random.Generator, frames: int, divisions: int) -> list[int]:
    """The mothers' last frames: distinct, in 1..frames-2, spread over the middle of the movie
    (its middle 60 % when that has room for them all, else anywhere in 1..frames-2)."""
    allowed = np.arange(1, frames - 1)
    middle = allowed[(allowed >= 0.2 * (frames - 1)) & (allowed <= 0.8 * (frames - 1))]
    pool = middle if len(middle) >= divisions else allowed
    # Stratified: one frame from each of `divisions` equal parts of the pool, so they spread out.
    parts = np.array_split(pool, divisions) if divisions else []
    return sorted(int(rng.choice(part)) for part in parts)


def simulate(
    frames: int, size: int, cells: int, divisions: int, rng: np.random.Generator
) -> tuple[list[list[_Nucleus]], list[tuple[int, int, int, int]], list[tuple[int, int, tuple[int, int]]]]:
    """Simulate the nuclei's lives.

    Returns the nuclei of every frame (a list per frame of copies of their states), the tracks
    `(label, first frame, last frame, parent or 0)`, and the divisions `(mother, daughters' first
    frame, (daughter, daughter))`. Labels 1..cells are the nuclei of frame 0, the daughters follow.
    """
    if not 0 <= divisions <= cells or (divisions and divisions >= frames - 1):
        raise ValueError(
            f"divisions must be in 0..min(cells, frames - 2) = 0..{min(cells, max(frames - 2, 0))}, got {divisions}"
        )
    alive = _place_initial(rng, cells, size)
    ends = _division_frames(rng, frames, divisions)
    # Each mother a different nucleus of frame 0 (so `divisions <= cells` always has mothers).
    mothers = {end: int(label) for end, label in zip(ends, rng.permutation(np.arange(1, cells + 1))[:divisions])}
    next_label = cells + 1
    tracks: dict[int, list[int]] = {c.label: [c.label, 0, frames - 1, 0] for c in alive}
    events: list[tuple[int, int, tuple[int, int]]] = []
    history: list[list[_Nucleus]] = []
    for t in range(frames):
        if t > 0:
            ending = mothers.get(t - 1)
            mother = next((c for c in alive if c.label == ending), None)
            if mother is not None:
                alive.remove(mother)
            _step(alive, rng, size)
            fixed: frozenset[int] = frozenset()
            if mother is not None:
                daughters = _divide(mother, (next_label, next_label + 1), t, rng, size)
                alive.extend(daughters)
                fixed = frozenset(d.label for d in daughters)
                tracks[mother.label][2] = t - 1
                for d in daughters:
                    tracks[d.label] = [d.label, t, frames - 1, mother.label]
                events.append((mother.label, t, (next_label, next_label + 1)))
                next_label += 2
            _separate(alive, size, fixed)
        for cell in alive:
            end = next((e for e, label in mothers.items() if label == cell.label), None)
            if end is not None and end - MITOSIS_FRAMES < t <= end:
                cell.mitosis = (t - (end - MITOSIS_FRAMES)) / MITOSIS_FRAMES
                cell.glow = MITOSIS_GLOW * cell.mitosis
        if any(c.mitosis for c in alive):
            # Rounding up changes the outlines: keep them apart (a mother only shrinks, but its
            # rounding can bulge out where it was flat).
            _separate(alive, size)
        history.append([_copy(c) for c in alive])
    return history, [tuple(v) for v in sorted(tracks.values())], events


def _copy(cell: _Nucleus) -> _Nucleus:
    return _Nucleus(
        **{k: (v.copy() if isinstance(v, np.ndarray) and k != "texture" else v) for k, v in cell.__dict__.items()}
    )


# ---------------------------------------------------------------- imaging


def render_labels(nuclei: list[_Nucleus], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact coverage of every nucleus and the ground-truth labels of one frame.

    Returns coverage (N, size, size) float32 in [0, 1] (N = len(nuclei)) and labels (size, size)
    uint16: the label of the nucleus covering most of a pixel if it covers at least half, else 0.
    """
    if not nuclei:
        return np.zeros((0, size, size), np.float32), np.zeros((size, size), np.uint16)
    vertices = torch.from_numpy(np.stack([c.outline() for c in nuclei]).astype(np.float32))
    coverage = render_polygons(vertices, size, size).numpy()
    best = coverage.argmax(axis=0)
    ids = np.array([c.label for c in nuclei], dtype=np.uint16)
    labels = np.where(coverage.max(axis=0) >= 0.5, ids[best], 0).astype(np.uint16)
    return coverage, labels


def _fluorescence(nuclei: list[_Nucleus], coverage: np.ndarray, scale: float) -> np.ndarray:
    """Dye density (size, size): each nucleus's coverage times its brightness (times `scale`, the
    bleaching) times its texture, sampled in the nucleus's own rotating frame."""
    size = coverage.shape[-1]
    density = np.zeros((size, size))
    for cell, cover in zip(nuclei, coverage):
        rows, cols = np.nonzero(cover)
        if not len(rows):
            continue
        # Pixel -> the nucleus's own coordinates (rotate by -angle about its centre).
        dx, dy = cols - cell.centre[0], rows - cell.centre[1]
        c, s = math.cos(cell.angle), math.sin(cell.angle)
        half = (TEXTURE_SIZE - 1) / 2
        local = np.stack([s * -dx + c * dy + half, c * dx + s * dy + half])  # (row, col) in the patch
        texture = map_coordinates(cell.texture, local, order=1, mode="nearest")
        density[rows, cols] += cover[rows, cols] * cell.brightness * (1 + cell.glow) * scale * texture
    return density


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth uneven background (size, size): a low level, a gentle gradient, a slow wobble."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    angle = rng.uniform(0.0, 2 * math.pi)
    gradient = rng.uniform(*GRADIENT) * (math.cos(angle) * x + math.sin(angle) * y)
    wobble = gaussian_filter(rng.standard_normal((size, size)), WOBBLE_SCALE * size, mode="wrap")
    return rng.uniform(*BACKGROUND) + gradient + WOBBLE * wobble / wobble.std()


def snr(images: np.ndarray, labels: np.ndarray) -> float:
    """The Cell Tracking Challenge's signal-to-noise ratio of a movie: |mean inside the nuclei - mean
    of the background| / std of the background, per frame, averaged. The background is the pixels
    more than 3 px away from every nucleus. images, labels: (T, H, W)."""
    values = []
    for image, label in zip(images.astype(np.float64), labels):
        inside = label > 0
        background = distance_transform_edt(~inside) > 3
        if inside.any() and background.any():
            values.append(abs(image[inside].mean() - image[background].mean()) / image[background].std())
    return float(np.mean(values)) if values else float("nan")


def write_cell_dataset(
    out: Path, frames: int = 20, size: int = 256, cells: int = 12, divisions: int = 4, seed: int = 0
) -> dict:
    """Write a synthetic time-lapse of `cells` moving nuclei, `divisions` of which divide, as the CTC
    sequence `01` with its full ground truth under `out` (layout in the module docstring).

    frames: number of frames T; size: frame side in px; divisions: 0..min(cells, T - 2).
    Deterministic for a given seed. Returns a summary: `frames`, `size`, `seed`, `tracks` (list of
    `(label, first, last, parent)`), `divisions` (list of `(mother, daughters' first frame,
    (daughter, daughter))`), `snr` (the CTC signal-to-noise ratio of the raw frames) and
    `intensity` (the smallest and largest raw value, counts).
    """
    out = Path(out)
    motion_seed, imaging_seed = np.random.SeedSequence(seed).spawn(2)
    history, tracks, events = simulate(frames, size, cells, divisions, np.random.default_rng(motion_seed))

    rng = np.random.default_rng(imaging_seed)
    background = _background(rng, size)
    bleaching = rng.uniform(*BLEACHING)
    photons = rng.uniform(*PHOTONS)
    read_noise = rng.uniform(*READ_NOISE)
    raw = np.empty((frames, size, size), np.uint16)
    labels = np.empty((frames, size, size), np.uint16)
    for t, nuclei in enumerate(history):
        coverage, labels[t] = render_labels(nuclei, size)
        light = _fluorescence(nuclei, coverage, (1 - bleaching) ** t)
        clean = gaussian_filter(background + light + HAZE * gaussian_filter(light, HAZE_SIGMA), PSF_SIGMA)
        electrons = rng.poisson(photons * np.maximum(clean, 0)) + rng.normal(0.0, read_noise, clean.shape)
        raw[t] = np.clip(np.rint(OFFSET + GAIN * electrons), 0, np.iinfo(np.uint16).max)

    times = list(range(frames))
    for t in times:
        write_tiff(out / "01" / f"t{t:03d}.tif", raw[t])
    write_label_frames(out / "01_GT" / "SEG", "man_seg", labels, times)
    write_label_frames(out / "01_GT" / "TRA", "man_track", labels, times)
    write_tracks(out / "01_GT" / "TRA" / "man_track.txt", tracks)
    return {
        "frames": frames,
        "size": size,
        "seed": seed,
        "tracks": tracks,
        "divisions": events,
        "snr": snr(raw, labels),
        "intensity": (int(raw.min()), int(raw.max())),
    }
