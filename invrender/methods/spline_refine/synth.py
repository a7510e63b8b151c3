"""Synthetic brightfield frames of overlapping slender bodies (C. elegans-like) with perfect labels.

An independent image model, deliberately unlike the splatting renderer that the spline fitter uses:
each body is a tube of varying width around its centreline; light crossing it is absorbed
(Beer-Lambert) in proportion to the chord length through the tube, so overlaps look darker; the
transmitted light multiplies an uneven background, is blurred by the optics and gets read and shot
noise. Labels are 100-point centrelines `[x, y]` in pixels with full widths in pixels.

Also the label perturbations of Zdyb, Alonso, Kirkegaard (Table 1/2) and a dataset writer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from invrender.core.geometry.spline_io import write_splines
from invrender.core.io import write_json, write_tiff
from invrender.methods.spline_refine.postures import draw_posture

#: Points per label centreline.
LABEL_POINTS = 100
#: Every how many label points an init keeps (plus the last), so inits look like detector output.
INIT_STRIDE = 9
#: The label points an init keeps.
INIT_POINTS = np.unique(np.r_[np.arange(0, LABEL_POINTS, INIT_STRIDE), LABEL_POINTS - 1])
INIT_NAMES = ("rotation", "displacement", "scaling", "pca", "straight")
#: The posture models of make_body.
POSTURES = ("waves", "eigenworm")
# How far each init is from its label (the robustness study's perturbations).
ROTATION = 20.0  # degrees about the body's centre, sign random per body
DISPLACEMENT = 10.0  # pixels, direction random per body
SCALING = 0.7  # factor about the body's centre
PCA_K = 2  # principal components kept of all labels of the set

# Body shape; lengths and widths are for a 128-pixel image and scale with the image size.
LENGTH_FRACTION = (0.35, 0.7)  # of the image size
MAX_WIDTH = (4.0, 7.0)  # px at size 128
TIP_WIDTH = 1.0  # px at size 128
TAPER_EXPONENT = 0.4  # width ~ sin(pi s) ** exponent: blunt body, quickly tapering tips
WAVE_CYCLES = (0.5, 1.3)  # curvature wave periods along the body
WAVE_AMPLITUDE = (0.2, 0.9)  # rad, swing of the heading angle
BEND = 1.2  # rad, largest net turn of the heading (C shapes)
# Largest |curvature| * length, so the tightest bend has a radius >= length / 6. Together with the
# bounds above the heading spans < pi, so a body never crosses itself.
MAX_CURVATURE_LENGTH = 6.0
PLACEMENT_TRIES = 1000
PLATE_GAP = 12.0  # px between the centrelines of bodies that do not cross, on a plate

# Imaging.
SUPERSAMPLE = 4
BRIGHTNESS = (0.6, 0.85)
GRADIENT = (0.0, 0.1)  # background change across the image
BACKGROUND_WOBBLE = (0.005, 0.02)  # std of the low-frequency background variation
WOBBLE_SCALE = 1 / 8  # its correlation length, fraction of the image size
CONTRAST = (0.35, 0.65)  # fraction of light absorbed at the middle of a body of average width
BLUR_SIGMA = (0.5, 1.2)  # px
NOISE = (0.02, 0.05)  # read noise std, fraction of the body contrast
PHOTONS = (3000.0, 20000.0)  # photons at intensity 1: sets the shot noise


@dataclass(frozen=True)
class BodyShape:
    """A body's length, widths and its posture: a heading that bends by `bend` and undulates with
    `cycles` waves of `amplitude` rad along the body, at wave phase `phase` (a crawling body's phase
    advances with time)."""

    length: float  # px
    width_max: float  # px
    widths: np.ndarray  # (100,) full widths px, width_max * sin(pi s)^TAPER_EXPONENT floored at the tips
    cycles: float
    amplitude: float
    phase: float
    bend: float
    heading: float  # rad, of the first segment's direction before the wave

    def centreline(self, phase: float | None = None) -> np.ndarray:
        """(100, 2) points [x, y] px starting at the origin, at wave phase `phase` (default own)."""
        phase = self.phase if phase is None else phase
        peak = abs(self.bend) + self.amplitude * 2 * np.pi * self.cycles  # bound on |curvature| * length
        shrink = min(1.0, MAX_CURVATURE_LENGTH / peak)
        # Heading at the segment midpoints: integral of curvature bend + A 2 pi f sin(2 pi f s + phase).
        s = np.linspace(0.0, 1.0, LABEL_POINTS)
        mid = (s[:-1] + s[1:]) / 2
        heading = self.heading + shrink * (
            self.bend * mid + self.amplitude * (np.cos(phase) - np.cos(2 * np.pi * self.cycles * mid + phase))
        )
        step = self.length / (LABEL_POINTS - 1)
        points = np.zeros((LABEL_POINTS, 2))
        points[1:] = np.cumsum(step * np.stack([np.cos(heading), np.sin(heading)], axis=1), axis=0)
        return points


def taper(width_max: float, tip_width: float) -> np.ndarray:
    """(100,) full widths px along a body: width_max * sin(pi s)^TAPER_EXPONENT, at least tip_width."""
    s = np.linspace(0.0, 1.0, LABEL_POINTS)
    return np.maximum(width_max * np.sin(np.pi * s) ** TAPER_EXPONENT, tip_width)


def body_shape(rng: np.random.Generator, body_size: int) -> BodyShape:
    """A random body's shape, as long and wide as a body in a `body_size` image."""
    scale = body_size / 128
    length = rng.uniform(*LENGTH_FRACTION) * body_size
    width_max = rng.uniform(*MAX_WIDTH) * scale
    widths = taper(width_max, TIP_WIDTH * scale)
    cycles = rng.uniform(*WAVE_CYCLES)
    amplitude = rng.uniform(*WAVE_AMPLITUDE)
    phase = rng.uniform(0.0, 2 * np.pi)
    bend = rng.uniform(-BEND, BEND)
    return BodyShape(length, width_max, widths, cycles, amplitude, phase, bend, rng.uniform(0.0, 2 * np.pi))


def make_body(rng: np.random.Generator, size: int, body_size: int | None = None, postures: str = "waves") -> dict:
    """A random body inside a `size x size` image, keeping a margin of its maximum width, with the
    length and width of a body in a `body_size` image (default `size`; smaller: a plate of many).
    `postures`: "waves" (gently curved bodies that never touch themselves, the benchmark's of
    Table 1) or "eigenworm" (real C. elegans postures with omega turns and coils, see postures.py).

    Returns `{"points": (100, 2) centreline [x, y] px, "widths": (100,) full width px}`, with
    "posture" (the posture's kind) for eigenworm postures.
    """
    body_size = size if body_size is None else body_size
    extra = {}
    if postures == "waves":
        shape = body_shape(rng, body_size)
        points, width_max, widths = shape.centreline(), shape.width_max, shape.widths
    elif postures == "eigenworm":
        kind, points, width_max = draw_posture(rng, LABEL_POINTS, body_size)
        widths = taper(width_max, TIP_WIDTH * body_size / 128)
        extra = {"posture": kind}
    else:
        raise ValueError(f"postures must be one of {', '.join(POSTURES)}, got {postures!r}")
    low = width_max - points.min(axis=0)
    high = size - 1 - width_max - points.max(axis=0)
    return {"points": points + rng.uniform(low, high), "widths": widths, **extra}


def make_frame(
    rng: np.random.Generator,
    n_bodies: int,
    size: int = 128,
    body_size: int | None = None,
    crossing: float = 1.0,
    postures: str = "waves",
) -> tuple[np.ndarray, list[dict]]:
    """A `(size, size)` float32 frame of `n_bodies` bodies and their labels (see make_body for
    `body_size` and `postures`).

    A fraction `crossing` of the bodies after the first pass through a point of the middle half of
    an earlier one, so bodies cross or overlap; the others (a plate: `body_size` < `size`) are
    placed at least PLATE_GAP px from every earlier body.
    """
    bodies: list[dict] = []
    n_crossing = round(crossing * (n_bodies - 1))
    for k in range(n_bodies):
        if k >= n_bodies - n_crossing:
            bodies.append(_crossing_body(rng, size, bodies, body_size, postures))
        else:
            bodies.append(_separate_body(rng, size, bodies, body_size, postures))
    return render_frame(rng, bodies, size), bodies


def _separate_body(
    rng: np.random.Generator, size: int, bodies: list[dict], body_size: int | None, postures: str
) -> dict:
    for _ in range(PLACEMENT_TRIES):
        body = make_body(rng, size, body_size, postures)
        if all(_polyline_gap(body["points"], other["points"]) >= PLATE_GAP for other in bodies):
            return body
    raise RuntimeError(f"could not place {len(bodies) + 1} separate bodies in a {size}x{size} image")


def _polyline_gap(a: np.ndarray, b: np.ndarray) -> float:
    """The least distance between the points of two centrelines (px)."""
    return float(np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min())


def _crossing_body(
    rng: np.random.Generator, size: int, bodies: list[dict], body_size: int | None, postures: str
) -> dict:
    quarter = LABEL_POINTS // 4
    for _ in range(PLACEMENT_TRIES):
        body = make_body(rng, size, body_size, postures)
        target = bodies[rng.integers(len(bodies))]["points"][rng.integers(quarter, 3 * quarter)]
        anchor = body["points"][rng.integers(quarter, 3 * quarter)]
        points = body["points"] + (target - anchor)
        margin = body["widths"].max()
        if points.min() >= margin and points.max() <= size - 1 - margin:
            return {**body, "points": points}
    raise RuntimeError(f"could not place a crossing body in a {size}x{size} image")


def body_thickness(body: dict, size: int, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Chord length (px) through the body's tube along the viewing axis, on the supersampled grid.

    Returns `(size * supersample, size * supersample)` float32; sample `(i, j)` sits at pixel
    coordinate `(j + 0.5) / supersample - 0.5`, so each pixel's samples are centred on it. The
    radius at a sample is the width / 2 interpolated at its closest centreline point.
    """
    points = np.asarray(body["points"], dtype=np.float64)
    radii = np.asarray(body["widths"], dtype=np.float64) / 2
    out = np.zeros((size * supersample,) * 2, dtype=np.float32)
    reach = radii.max()
    lo = np.clip(np.floor((points.min(axis=0) - reach + 0.5) * supersample).astype(int), 0, size * supersample)
    hi = np.clip(np.ceil((points.max(axis=0) + reach + 0.5) * supersample).astype(int) + 1, 0, size * supersample)
    xs = (np.arange(lo[0], hi[0]) + 0.5) / supersample - 0.5
    ys = (np.arange(lo[1], hi[1]) + 0.5) / supersample - 0.5
    gx, gy = np.meshgrid(xs, ys)
    samples = np.stack([gx.ravel(), gy.ravel()], axis=1)
    out[lo[1] : hi[1], lo[0] : hi[0]] = _tube_chord(samples, points, radii).reshape(gx.shape)
    return out


def _tube_chord(samples: np.ndarray, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """The summed chords `2 sqrt(r^2 - d^2)` through every layer of the tube around the polyline
    `points (K, 2)` at `samples (P, 2)`: a layer is a local minimum, along the body, of the exact
    distance d from the sample to the polyline's segments (a coiled body crossing itself has two
    there), r the `radii (K,)` interpolated at that closest point. Returns `(P,)` float32."""
    a = points[:-1].astype(np.float32)
    ab = np.diff(points, axis=0).astype(np.float32)
    inv_len2 = 1 / np.maximum((ab**2).sum(axis=1), 1e-12).astype(np.float32)
    r0, dr = radii[:-1].astype(np.float32), np.diff(radii).astype(np.float32)
    chunk = max(1, (1 << 21) // len(a))
    out = np.zeros(len(samples), dtype=np.float32)
    for start in range(0, len(samples), chunk):
        q = samples[start : start + chunk].astype(np.float32)
        dx = q[:, :1] - a[:, 0]
        dy = q[:, 1:] - a[:, 1]
        u = np.clip((dx * ab[:, 0] + dy * ab[:, 1]) * inv_len2, 0, 1)
        d2 = (dx - u * ab[:, 0]) ** 2 + (dy - u * ab[:, 1]) ** 2
        # Strict on one side only: neighbours sharing their closest vertex make one layer.
        wall = np.full((len(q), 1), np.inf, dtype=np.float32)
        layer = (d2 < np.hstack([wall, d2[:, :-1]])) & (d2 <= np.hstack([d2[:, 1:], wall]))
        r = r0 + u * dr
        out[start : start + chunk] = (2 * np.sqrt(np.maximum(r**2 - d2, 0)) * layer).sum(axis=1)
    return out


@dataclass(frozen=True)
class Imaging:
    """A frame's nuisance: how dark bodies are, the uneven background, the blur and the noise."""

    contrast: float  # fraction of light absorbed at the middle of a body of the frame's mean width
    brightness: float  # mean illumination
    background: np.ndarray  # (size, size) illumination
    blur: float  # px
    read_noise: float  # fraction of the body contrast
    photons: float  # at intensity 1


def draw_imaging(rng: np.random.Generator, size: int) -> Imaging:
    contrast = rng.uniform(*CONTRAST)
    brightness = rng.uniform(*BRIGHTNESS)
    angle = rng.uniform(0.0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    gradient = rng.uniform(*GRADIENT) * (np.cos(angle) * x + np.sin(angle) * y)
    wobble = gaussian_filter(rng.standard_normal((size, size)), WOBBLE_SCALE * size, mode="wrap")
    wobble *= rng.uniform(*BACKGROUND_WOBBLE) / wobble.std()
    background = brightness + gradient + wobble
    return Imaging(
        contrast, brightness, background, rng.uniform(*BLUR_SIGMA), rng.uniform(*NOISE), rng.uniform(*PHOTONS)
    )


def render_frame(rng: np.random.Generator, bodies: list[dict], size: int, imaging: Imaging | None = None) -> np.ndarray:
    """Render `bodies` into a `(size, size)` float32 brightfield frame, dark bodies on a bright,
    uneven background, values roughly in [0, 1]. The nuisance is `imaging` (default: drawn from
    `rng`); the noise is drawn from `rng`."""
    thickness = sum((body_thickness(b, size) for b in bodies), np.zeros((size * SUPERSAMPLE,) * 2, np.float32))
    imaging = draw_imaging(rng, size) if imaging is None else imaging
    # Absorption per pixel of path, set so the middle of a body of the frame's mean width absorbs
    # a fraction `contrast` of the light; bodies on top of each other absorb more.
    mean_width = np.mean([b["widths"].max() for b in bodies]) if bodies else 1.0
    mu = -np.log1p(-imaging.contrast) / mean_width
    transmission = np.exp(-mu * thickness).reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    clean = gaussian_filter(imaging.background * transmission, imaging.blur, mode="nearest")
    read_sigma = imaging.read_noise * imaging.contrast * imaging.brightness
    sigma = np.sqrt(read_sigma**2 + np.maximum(clean, 0) / imaging.photons)
    return (clean + sigma * rng.standard_normal((size, size))).astype(np.float32)


# ---------------------------------------------------------------- perturbations of a label (k, 2)


def rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate `(k, 2)` points by the signed angle `degrees` about their centroid."""
    theta = np.deg2rad(degrees)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = points.mean(axis=0)
    return (points - centre) @ rot.T + centre


def displace(points: np.ndarray, pixels: float, rng: np.random.Generator) -> np.ndarray:
    """Translate `(k, 2)` points by `pixels` in a uniformly random direction."""
    angle = rng.uniform(0.0, 2 * np.pi)
    return points + pixels * np.array([np.cos(angle), np.sin(angle)])


def scale(points: np.ndarray, factor: float) -> np.ndarray:
    """Scale `(k, 2)` points by `factor` about their centroid."""
    centre = points.mean(axis=0)
    return (points - centre) * factor + centre


def perturb(points: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """`(k, 2)` points moved by the rigid perturbation `kind` of the robustness study: "rotation"
    (ROTATION degrees, its sign drawn from `rng`), "displacement" (DISPLACEMENT px, its direction
    drawn) or "scaling" (by SCALING; draws nothing)."""
    if kind == "rotation":
        return rotate(points, ROTATION * rng.choice([-1.0, 1.0]))
    if kind == "displacement":
        return displace(points, DISPLACEMENT, rng)
    if kind == "scaling":
        return scale(points, SCALING)
    raise ValueError(f"unknown perturbation {kind!r}")


def bend(points: np.ndarray, rms_radians: float, rng: np.random.Generator, modes: int = 3) -> np.ndarray:
    """A posture error: the tangent angle of the polyline `(k, 2)` (k >= 3) changed by a smooth
    random function of arc length s in [0, 1], sum over j = 1..`modes` of c_j sqrt(2) cos(j pi s)
    with c_j ~ N(0, rms_radians^2 / modes), so its RMS over the body is about `rms_radians` and its
    mean 0 (the heading is kept). Each segment keeps its length; the centroid is kept."""
    points = np.asarray(points, dtype=np.float64)
    steps = np.diff(points, axis=0)
    s = (np.arange(len(steps)) + 0.5) / len(steps)
    c = rng.normal(0.0, rms_radians / np.sqrt(modes), modes)
    delta = np.sqrt(2.0) * np.cos(np.pi * np.outer(s, np.arange(1, modes + 1))) @ c
    turned = (
        steps[:, 0] * np.cos(delta) - steps[:, 1] * np.sin(delta),
        steps[:, 0] * np.sin(delta) + steps[:, 1] * np.cos(delta),
    )
    bent = np.vstack([np.zeros(2), np.cumsum(np.stack(turned, axis=1), axis=0)])
    return bent - bent.mean(axis=0) + points.mean(axis=0)


def straight_line(points: np.ndarray, k: int | None = None) -> np.ndarray:
    """The straight line between the first and last of `points`, as `k` (default: as many) points."""
    k = len(points) if k is None else k
    t = np.linspace(0.0, 1.0, k)[:, None]
    return points[0] + t * (points[-1] - points[0])


def pca_compress(all_labels: np.ndarray, k: int = 2) -> np.ndarray:
    """Project labels `(n_labels, 100, 2)` onto the first `k` principal components of their
    centroid-subtracted shapes (fitted on this whole set), then restore each centroid."""
    centres = all_labels.mean(axis=1, keepdims=True)
    shapes = (all_labels - centres).reshape(len(all_labels), -1)
    mean = shapes.mean(axis=0)
    _, _, vt = np.linalg.svd(shapes - mean, full_matrices=False)
    basis = vt[:k]
    compressed = mean + (shapes - mean) @ basis.T @ basis
    return compressed.reshape(all_labels.shape) + centres


# ---------------------------------------------------------------- dataset


def write_spline_dataset(
    out_dir: str | os.PathLike,
    bodies: int,
    frames: int,
    size: int = 128,
    seed: int = 0,
    body_size: int | None = None,
    crossing: float = 1.0,
    postures: str = "waves",
) -> None:
    """Write a benchmark set of `frames` frames with `bodies` bodies each under `out_dir`.

    Layout: `frame_0000.tif` (float32), `labels/frame_0000.json` (100 points + widths per body),
    `inits/<name>/frame_0000.json` for each perturbation in INIT_NAMES (points only, every
    INIT_STRIDE-th point plus the last), and `dataset.json` with the parameters. Rotation signs and
    displacement directions are random per body; the PCA is fitted on all labels of the set.
    Deterministic for a given seed. `body_size` and `crossing`: see make_frame (a plate of separate
    bodies with a few crossing: e.g. size 1024, body_size 128, crossing 0.2). `postures`: see
    make_body; eigenworm labels also carry each body's posture kind.
    """
    out = Path(out_dir)
    # Seeds by index: a set with more frames starts with the same frames. Perturbations have their
    # own stream, so they never change the images.
    perturbation_seed, *frame_seeds = np.random.SeedSequence(seed).spawn(frames + 1)
    labels = []
    for f, frame_seed in enumerate(frame_seeds):
        image, frame_bodies = make_frame(np.random.default_rng(frame_seed), bodies, size, body_size, crossing, postures)
        write_tiff(out / _frame_name(f, ".tif"), image)
        labels.append(frame_bodies)
        records = [{"id": i, **b} for i, b in enumerate(frame_bodies)]
        write_splines(out / "labels" / _frame_name(f, ".json"), [records], image=_frame_name(f, ".tif"))

    all_points = np.array([b["points"] for frame in labels for b in frame]).reshape(-1, LABEL_POINTS, 2)
    compressed = pca_compress(all_points, PCA_K).reshape(frames, bodies, LABEL_POINTS, 2)
    pert_rng = np.random.default_rng(perturbation_seed)
    for f, frame_bodies in enumerate(labels):
        inits: dict[str, list[np.ndarray]] = {name: [] for name in INIT_NAMES}
        for i, body in enumerate(frame_bodies):
            p = body["points"]
            for kind in ("rotation", "displacement", "scaling"):  # in this order: the draws follow it
                inits[kind].append(perturb(p, kind, pert_rng))
            inits["pca"].append(compressed[f, i])
            inits["straight"].append(straight_line(p))
        for name, curves in inits.items():
            records = [{"id": i, "points": c[INIT_POINTS], "widths": None} for i, c in enumerate(curves)]
            write_splines(out / "inits" / name / _frame_name(f, ".json"), [records], image=_frame_name(f, ".tif"))

    perturbations = {
        "rotation": {"degrees": ROTATION, "sign": "random"},
        "displacement": {"pixels": DISPLACEMENT, "direction": "random"},
        "scaling": {"factor": SCALING},
        "pca": {"k": PCA_K, "fitted_on": "all labels of the set"},
        "straight": {},
    }
    drawn = {"body_size": size if body_size is None else body_size, "crossing": crossing, "postures": postures}
    sampled = {"label_points": LABEL_POINTS, "init_points": len(INIT_POINTS), "perturbations": perturbations}
    write_dataset_record(out, __name__, bodies, frames, size, seed, **drawn, **sampled)


def write_dataset_record(out: Path, generator: str, bodies: int, frames: int, size: int, seed: int, **details) -> None:
    """`out/dataset.json`: the generator (a module name) and the settings a set was made with, the
    ones every spline set has first, then that generator's own `details`."""
    write_json(
        out / "dataset.json",
        {"generator": generator, "bodies": bodies, "frames": frames, "size": size, "seed": seed, **details},
    )


def _frame_name(index: int, suffix: str) -> str:
    return f"frame_{index:04d}{suffix}"
