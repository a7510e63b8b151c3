"""A synthetic CT of known vertebrae from a label mask (`invrender synth ct`): for benchmarking the
training-free vertebra segmentation (`spine-seg`), which fits deformable templates to CT.

The mask (VerSe style: one label per vertebra, 1-7 cervical, 8-19 thoracic, 20-25 lumbar) is
resampled onto an output grid, cropped to the chosen levels plus a margin, through a random smooth
deformation: a displacement field from Gaussian-filtered noise (autocorrelation falling to 1/e at
30 mm) scaled to a largest magnitude of `deform` mm, then a small rigid motion (up to 3 degrees
about the centre of the chosen levels, up to 2 mm of shift). The mapping is backward: the output
voxel at world x shows the source at

    T(x) = Q (x + u(x) - c) / s + c + t    (Q rotation, c centre, t shift, u displacement, mm;
                                            s the person's scale)

so labels resample by nearest neighbour without holes. `deform=0` is the identity (no rigid motion
either), so the output is then the mask itself, resampled.

The factors in which real CTs differ from the mask's own, each an option:
- the grid: the mask's axis directions, or any axis codes (`orientation`, e.g. LAS, as stored by
  many scanners); the voxel size per anatomical axis (`spacing`, e.g. 0.7 x 0.7 x 2.5 mm slices);
- the pose: `tilt` degrees of rotation about an axis in the axial plane (a spine oblique to the
  image axes), part of Q;
- the person: `scale` s, vertebrae and their spacing larger (s > 1) or smaller than the mask's;
- the surroundings: `distractors` adds ribs touching the thoracic vertebrae, the aorta with
  contrast, the kidneys and the lungs (`methods/spine_seg/synth_anatomy.py`).

Intensities, in Hounsfield units, are drawn from the deformed labels as a CT shows bone: soft tissue
(40 HU with a slow variation of up to 30 HU), each vertebra a cortical shell (its outer 1.5 mm,
700-1000 HU) around cancellous bone (200-300 HU with a trabecular texture), the intervertebral
discs and joint spaces (soft tissue within 5 mm of two vertebrae) at 80 HU; then the scanner's
PSF (a Gaussian of 0.6 mm) and noise (20 HU). The tissues are drawn on a grid of at most 1 mm and
each output voxel is the mean over its own box (a thick slice averages what it spans: partial
volume), before the noise. Every vertebra of the mask inside the grid appears in both the CT and
the output mask, also those outside the chosen levels, as in a real scan.

Written into `out`:

    <name>_ct.nii.gz     the CT, int16 HU
    <name>_msk.nii.gz    the deformed labels, uint8 (int16 beyond 255), nearest neighbour at the
                         output voxels' centres
    <name>_ctd.json      VerSe centroids of the vertebrae whose centroid lies inside the grid, in
                         voxel indices of the output grid (direction: its axis codes): the input's
                         body centroids when given, else the centroid of each whole label of the
                         input (10-15 mm behind the body's), moved with the deformation
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import center_of_mass, distance_transform_edt, find_objects, gaussian_filter, map_coordinates
from scipy.spatial.transform import Rotation

from invrender.core.io import write_json
from invrender.core.volumes import (
    Volume,
    affine_spacing,
    index_to_world,
    read_centroids,
    read_label_volume,
    world_to_index,
    write_nifti,
)
from invrender.methods.spine_seg.frames import WORLD_POSTERIOR

# The output grid.
MARGIN = 20.0  # mm around the chosen levels
FINE = 1.0  # mm: tissues are drawn on a grid at least this fine, then averaged over each output voxel
CHUNK = 2_000_000  # points mapped at a time (bounds the memory of large grids)

# The motion, in mm and degrees.
CORRELATION = 30.0  # distance at which the displacement's autocorrelation falls to 1/e
NODE_SPACING = 5.0  # between the nodes of the smooth random fields, interpolated trilinearly
MAX_ROTATION = 3.0  # degrees, about a random axis through the centre of the chosen levels
MAX_SHIFT = 2.0
INVERSE_STEPS = 20  # fixed-point iterations that move a source point to the output

# The intensities, in HU and mm.
SOFT_TISSUE = 40.0
SOFT_TISSUE_VARIATION = 30.0  # largest departure of the slow background variation
DISC = 80.0  # intervertebral discs and joint spaces
DISC_REACH = 5.0  # soft tissue this close to two vertebrae is disc (or joint) space
CORTICAL = (700.0, 1000.0)  # each vertebra its own value in this range
CORTICAL_THICKNESS = 1.5
CANCELLOUS = (200.0, 300.0)
TEXTURE = (20.0, 50.0)  # standard deviation of each vertebra's trabecular texture
TEXTURE_GRAIN = 1.0  # sigma of the Gaussian filter that makes the texture
PSF_SIGMA = 0.6
NOISE = 20.0
HU_RANGE = (-1024, 3071)  # what a CT stores


def select_levels(labels: np.ndarray, levels: tuple[int, int] | None) -> np.ndarray:
    """(I, J, K) bool: the voxels of the labels in the inclusive range `levels` (all labels when
    None); ValueError for a mask without labels or without any in `levels`."""
    present = np.unique(labels[labels > 0])
    if not len(present):
        raise ValueError("the mask has no labels (all voxels are 0)")
    if levels is None:
        return labels > 0
    chosen = present[(present >= levels[0]) & (present <= levels[1])]
    if not len(chosen):
        raise ValueError(
            f"no levels {levels[0]}-{levels[1]} in the mask, which has labels {present.min()}-{present.max()}"
        )
    return np.isin(labels, chosen)


def parse_spacing(spacing: float | tuple[float, float, float]) -> np.ndarray:
    """(3,) mm along the anatomical axes x (R-L), y (A-P), z (S-I) from one number (isotropic) or
    three; ValueError unless positive and finite."""
    values = np.asarray(spacing, dtype=np.float64).reshape(-1)
    values = np.repeat(values, 3) if values.size == 1 else values
    if values.shape != (3,) or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"spacing {spacing!r} is not one or three positive numbers (mm)")
    return values.copy()


def axis_directions(orientation: str) -> np.ndarray:
    """(3, 3) unit world direction (columns) of each voxel axis of the axis codes `orientation`
    (e.g. "LAS": i towards the left, j anterior, k superior); ValueError for anything else."""
    from nibabel.orientations import axcodes2ornt

    codes = tuple(orientation.upper()) if isinstance(orientation, str) else ()
    try:
        ornt = axcodes2ornt(codes)
    except (TypeError, ValueError):
        ornt = None
    if ornt is None or len(codes) != 3 or np.isnan(ornt).any() or sorted(ornt[:, 0]) != [0, 1, 2]:
        raise ValueError(f"orientation {orientation!r} is not three axis codes of different axes, e.g. LAS or PIR")
    directions = np.zeros((3, 3))
    for axis, (world, flip) in enumerate(ornt):
        directions[int(world), axis] = flip
    return directions


def output_grid(
    source: Volume,
    keep: np.ndarray,
    spacing: np.ndarray,
    orientation: str | None = None,
    motion: Motion | None = None,
) -> tuple[tuple[int, int, int], np.ndarray]:
    """The output grid: the source's axis directions (or those of the axis codes `orientation`),
    `spacing` (3,) mm along the anatomical axes x, y, z (each voxel axis takes that of the world
    axis it runs along), covering the voxels `keep` (I, J, K bool), moved by the rigid part of
    `motion`, plus MARGIN mm, clipped to the source's field of view (moved likewise). Returns the
    shape and the (4, 4) affine (voxel index -> world mm)."""
    if orientation is None:
        directions = source.affine[:3, :3] / source.spacing
        origin = source.affine[:3, 3]
    else:
        directions, origin = axis_directions(orientation), np.zeros(3)
    along = spacing[np.abs(directions).argmax(axis=0)]  # (3,) mm of each voxel axis
    to_frame = np.linalg.inv(directions)  # world -> the grid's frame f, in which the grid is a box

    def box(index_low: np.ndarray, index_high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        corners = np.array(np.meshgrid(*zip(index_low, index_high), indexing="ij")).reshape(3, -1).T
        world = index_to_world(source.affine, corners)
        frame = (motion.forward_rigid(world) if motion is not None else world) @ to_frame.T - origin @ to_frame.T
        return frame.min(axis=0), frame.max(axis=0)

    index = np.argwhere(keep)
    kept_low, kept_high = box(index.min(axis=0), index.max(axis=0))
    view_low, view_high = box(np.zeros(3), np.array(source.shape) - 1.0)
    low = np.maximum(kept_low - MARGIN, view_low)
    high = np.minimum(kept_high + MARGIN, view_high)
    shape = tuple(int(n) for n in np.floor((high - low) / along + 1e-9) + 1)
    affine = np.eye(4)
    affine[:3, :3] = directions * along
    affine[:3, 3] = origin + directions @ low
    return shape, affine


def fine_grid(shape: tuple[int, int, int], affine: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    """The grid the tissues are drawn on: every output voxel split into n (3,) sub-voxels per axis
    (n = its size / FINE, rounded up), centred in it. Returns the fine shape, affine and n."""
    spacing = affine_spacing(affine)
    factors = np.ceil(spacing / FINE - 1e-6).astype(int)
    fine = affine.copy()
    fine[:3, :3] = affine[:3, :3] / factors
    fine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ (0.5 / factors - 0.5)
    return tuple(int(n) for n in np.array(shape) * factors), fine, factors


def block_mean(values: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(I, J, K) the mean of each block of `factors` (3,) voxels of `values` (I n_i, J n_j, K n_k)."""
    shape = np.array(values.shape) // factors
    blocks = values.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2])
    return blocks.mean(axis=(1, 3, 5), dtype=np.float64).astype(values.dtype)


@dataclass
class SmoothField:
    """A smooth random field: `values` (C, A, B, D) on coarse nodes, `affine` (4, 4) node index ->
    world mm, interpolated trilinearly (constant beyond the outer nodes)."""

    values: np.ndarray
    affine: np.ndarray

    def at(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world mm -> (N, C) values."""
        index = world_to_index(self.affine, points).T
        return np.stack([map_coordinates(v, index, order=1, mode="nearest") for v in self.values], axis=1)


def smooth_field(
    shape: tuple[int, int, int], affine: np.ndarray, components: int, rng: np.random.Generator
) -> SmoothField:
    """A `components`-vector field of Gaussian-filtered white noise over the grid (`shape`, `affine`),
    with autocorrelation falling to 1/e at CORRELATION mm, scaled so that its largest magnitude is 1
    (trilinear interpolation never exceeds its nodes' largest magnitude: a convex combination)."""
    spacing = affine_spacing(affine)
    # Nodes every NODE_SPACING mm along the grid's axes, one beyond the grid on every side.
    nodes = np.ceil((np.array(shape) - 1) * spacing / NODE_SPACING).astype(int) + 3
    node_affine = affine.copy()
    node_affine[:3, :3] = affine[:3, :3] / spacing * NODE_SPACING
    node_affine[:3, 3] = affine[:3, 3] - node_affine[:3, :3].sum(axis=1)
    # Filtering white noise with a Gaussian of sigma s gives the autocorrelation exp(-r^2 / 4 s^2).
    sigma = CORRELATION / 2 / NODE_SPACING
    values = np.stack([gaussian_filter(rng.standard_normal(tuple(nodes)), sigma) for _ in range(components)])
    return SmoothField(values / np.linalg.norm(values, axis=0).max(), node_affine)


@dataclass
class Motion:
    """The backward map T(x) = Q (x + u(x) - c) / s + c + t, world mm to world mm (module docstring)."""

    rotation: np.ndarray  # Q (3, 3)
    centre: np.ndarray  # c (3,) mm
    shift: np.ndarray  # t (3,) mm
    scale: float = 1.0  # s
    displacement: SmoothField | None = None  # u, mm, 3 components; None: no deformation

    def _u(self, points: np.ndarray) -> np.ndarray:
        return self.displacement.at(points) if self.displacement is not None else np.zeros_like(points)

    def backward(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world mm of output points -> (N, 3) world mm in the source that they show."""
        moved = points + self._u(points) - self.centre
        return moved @ self.rotation.T / self.scale + self.centre + self.shift

    def forward_rigid(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world mm in the source -> where the output shows them without the deformation u."""
        return self.scale * (points - self.centre - self.shift) @ self.rotation + self.centre

    def forward(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world mm in the source -> (N, 3) world mm where the output shows them: the rigid
        part inverted exactly, then y + u(y) = q solved by the fixed-point iteration y <- q - u(y),
        a contraction while u changes by less than 1 mm per mm (its gradient stays below about
        0.06 deform per mm, so up to deform ~ 15 mm)."""
        target = self.forward_rigid(points)
        moved = target.copy()
        for _ in range(INVERSE_STEPS if self.displacement is not None else 0):
            moved = target - self.displacement.at(moved)
        return moved

    def backward_in_chunks(self, points: np.ndarray) -> np.ndarray:
        return (
            np.concatenate([self.backward(points[i : i + CHUNK]) for i in range(0, len(points), CHUNK)])
            if len(points)
            else points
        )


def rigid_motion(
    centre: np.ndarray, deform: float, rng: np.random.Generator, tilt: float = 0.0, scale: float = 1.0
) -> Motion:
    """The rigid part and scale of the motion about `centre` (3,) mm: a random rotation of up to
    MAX_ROTATION degrees and shift of up to MAX_SHIFT mm (none for deform=0), after a rotation by
    `tilt` degrees about a random axis in the axial plane (the spine oblique to the image axes),
    and the scale s of the person."""
    rotation, shift = np.eye(3), np.zeros(3)
    if deform > 0:
        axis, direction = _unit(rng.standard_normal(3)), _unit(rng.standard_normal(3))
        rotation = Rotation.from_rotvec(np.radians(rng.uniform(0, MAX_ROTATION)) * axis).as_matrix()
        shift = rng.uniform(0, MAX_SHIFT) * direction
    if tilt:
        heading = rng.uniform(0, 2 * np.pi)
        axis = np.array([np.cos(heading), np.sin(heading), 0.0])
        rotation = rotation @ Rotation.from_rotvec(np.radians(tilt) * axis).as_matrix()
    return Motion(rotation, np.asarray(centre, dtype=np.float64), shift, float(scale))


def with_deformation(
    rigid: Motion, shape: tuple[int, int, int], affine: np.ndarray, deform: float, rng: np.random.Generator
) -> Motion:
    """`rigid` plus a smooth random displacement over the grid (`shape`, `affine`) of largest
    magnitude `deform` mm (none for deform=0)."""
    if deform == 0:
        return rigid
    field = smooth_field(shape, affine, 3, rng)
    field.values *= deform
    return Motion(rigid.rotation, rigid.centre, rigid.shift, rigid.scale, field)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def resample_labels(source: Volume, points: np.ndarray) -> np.ndarray:
    """(N,) labels of the source (I, J, K integer) at world points (N, 3) mm, by nearest neighbour; 0
    outside the source."""
    index = world_to_index(source.affine, points).T
    return map_coordinates(source.data, index, order=0, mode="constant", cval=0)


def ct_intensities(
    labels: np.ndarray,
    affine: np.ndarray,
    rng: np.random.Generator,
    distractors: bool = False,
    posterior: np.ndarray | None = None,
) -> np.ndarray:
    """(I, J, K) float32 HU, before noise, of a CT showing the vertebrae `labels` (I, J, K integer)
    on the grid `affine` (4, 4): tissues as in the module docstring, with the distractor anatomy
    when asked (placed around the vertebrae; `posterior` (3,) the person's posterior direction),
    then the PSF."""
    from invrender.methods.spine_seg.synth_anatomy import paint_surroundings

    spacing = affine_spacing(affine)
    points = index_to_world(affine, np.indices(labels.shape).reshape(3, -1).T)
    variation = smooth_field(labels.shape, affine, 1, rng).at(points).reshape(labels.shape)
    del points
    hu = (SOFT_TISSUE + SOFT_TISSUE_VARIATION * variation).astype(np.float32)
    _paint_discs(hu, labels, spacing)
    if distractors:
        paint_surroundings(hu, labels, affine, posterior, rng)
    texture = gaussian_filter(rng.standard_normal(labels.shape, dtype=np.float32), TEXTURE_GRAIN / spacing)
    texture /= texture.std()
    for label, box in _label_boxes(labels, np.ones(3, dtype=int)):
        _paint_vertebra(hu[box], labels[box] == label, texture[box], spacing, rng)
    return gaussian_filter(hu, PSF_SIGMA / spacing)


def _label_boxes(labels: np.ndarray, pad: np.ndarray) -> list[tuple[int, tuple[slice, ...]]]:
    """(label, box) for every label present: its bounding box grown by `pad` (3,) voxels, clipped."""
    boxes = find_objects(labels)
    return [
        (label, tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(box, pad, labels.shape)))
        for label, box in enumerate(boxes, start=1)
        if box is not None
    ]


def _paint_vertebra(
    hu: np.ndarray, mask: np.ndarray, texture: np.ndarray, spacing: np.ndarray, rng: np.random.Generator
) -> None:
    """Paint one vertebra (mask, bool) into `hu` (both cropped to its box, `spacing` (3,) mm): a
    cortical shell and a textured cancellous interior, each at this vertebra's own HU."""
    # The distance from a voxel's centre to the nearest voxel outside, minus half a voxel, is its
    # depth below the surface; the outer layer of voxels is shell however coarse the grid.
    depth = distance_transform_edt(mask, sampling=spacing)
    shell = mask & (depth <= max(spacing.max(), CORTICAL_THICKNESS + spacing.max() / 2))
    interior = mask & ~shell
    hu[shell] = rng.uniform(*CORTICAL)
    hu[interior] = rng.uniform(*CANCELLOUS) + rng.uniform(*TEXTURE) * texture[interior]


def _paint_discs(hu: np.ndarray, labels: np.ndarray, spacing: np.ndarray) -> None:
    """Paint DISC HU into the soft tissue within DISC_REACH mm of two vertebrae (I, J, K); `spacing` (3,) mm."""
    pad = np.ceil(DISC_REACH / spacing).astype(int)
    boxes = _label_boxes(labels, pad)
    for n, (first, a) in enumerate(boxes):
        for second, b in boxes[n + 1 :]:
            if any(s.start >= t.stop or t.start >= s.stop for s, t in zip(a, b)):
                continue  # too far apart to share a disc
            box = tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b))
            crop = labels[box]
            near = [distance_transform_edt(crop != label, sampling=spacing) <= DISC_REACH for label in (first, second)]
            hu[box][(crop == 0) & near[0] & near[1]] = DISC


def label_centroids(volume: Volume) -> dict[int, np.ndarray]:
    """{label: (3,) world mm of the centroid of its voxels} for the labels of `volume`."""
    present = [int(v) for v in np.unique(volume.data[volume.data > 0])]
    index = np.array(center_of_mass(volume.data > 0, volume.data, present)).reshape(-1, 3)
    return dict(zip(present, index_to_world(volume.affine, index)))


def moved_centroids(centroids: dict[int, np.ndarray], motion: Motion, grid: Volume) -> dict[int, np.ndarray]:
    """{label: (3,) voxel index in the output grid} of source centroids (world mm) moved forward
    through the motion, for those that land inside the grid."""
    index = world_to_index(grid.affine, motion.forward(np.array(list(centroids.values()))))
    inside = ((index >= -0.5) & (index <= np.array(grid.shape) - 0.5)).all(axis=1)
    return {label: i for label, i, keep in zip(centroids, index, inside) if keep}


def axis_codes(affine: np.ndarray) -> str:
    """The axis codes of a grid, e.g. "PIR": where each voxel axis points."""
    import nibabel

    return "".join(nibabel.aff2axcodes(affine))


def write_centroids(path: str | os.PathLike, centroids: dict[int, np.ndarray], grid: Volume) -> None:
    """Write VerSe centroid JSON: the grid's axis codes, then X, Y, Z = voxel indices i, j, k."""
    entries = [{"direction": list(axis_codes(grid.affine))}]
    entries += [
        {"label": label, "X": round(float(i), 2), "Y": round(float(j), 2), "Z": round(float(k), 2)}
        for label, (i, j, k) in sorted(centroids.items())
    ]
    write_json(path, entries)


def default_name(labels_path: str | os.PathLike, seed: int) -> str:
    """`synth-<subject>-s<seed>`: the mask's file name without .nii(.gz) and VerSe's mask suffix."""
    stem = re.sub(r"\.nii(\.gz)?$", "", Path(labels_path).name, flags=re.IGNORECASE)
    return f"synth-{re.sub(r'(_seg-vert)?_msk$', '', stem)}-s{seed}"


def write_ct_dataset(
    labels_path: str | os.PathLike,
    out: str | os.PathLike,
    centroids_path: str | os.PathLike | None = None,
    levels: tuple[int, int] | None = None,
    spacing: float | tuple[float, float, float] = 1.0,
    deform: float = 4.0,
    seed: int = 0,
    name: str | None = None,
    orientation: str | None = None,
    tilt: float = 0.0,
    scale: float = 1.0,
    distractors: bool = False,
) -> dict:
    """Write a synthetic CT of the vertebrae in the label mask `labels_path`, its deformed labels and
    their centroids into `out` (module docstring); deterministic for a seed.

    levels: inclusive label range whose bounding box (plus MARGIN mm) is the field of view, None for
    all; spacing: of the output grid, mm, one number or three along x (R-L), y (A-P), z (S-I);
    deform: largest displacement of the smooth deformation, mm; centroids_path: VerSe centroids of
    the mask (moved with it) instead of the labels' centroids; orientation: axis codes of the
    output grid (None: the mask's directions); tilt: degrees; scale: of the person; distractors:
    ribs, aorta, kidneys and lungs around the vertebrae.
    Raises InputError for an unreadable mask or centroid file, ValueError for a mask without
    labels or without any in `levels`, or a bad spacing or orientation. Returns a summary: `name`,
    the three paths, `shape`, `spacing` (mm per voxel axis), `orientation`, `labels` (present in
    the output mask), `centroids` ({label: voxel index}), `max_displacement` (mm, of T over the
    grid), `rotation` (degrees), `shift` (mm), `tilt`, `scale`, `distractors`.
    """
    out = Path(out)
    name = name or default_name(labels_path, seed)
    anatomical_spacing = parse_spacing(spacing)
    if orientation is not None:
        axis_directions(orientation)  # a bad code is refused before any work
    source = read_label_volume(labels_path)
    keep = select_levels(source.data, levels)
    motion_seed, imaging_seed = np.random.SeedSequence(seed).spawn(2)
    motion_rng = np.random.default_rng(motion_seed)
    index = np.argwhere(keep)
    centre = index_to_world(source.affine, (index.min(axis=0) + index.max(axis=0))[None] / 2)[0]
    rigid = rigid_motion(centre, deform, motion_rng, tilt, scale)
    shape, affine = output_grid(source, keep, anatomical_spacing, orientation, rigid)
    motion = with_deformation(rigid, shape, affine, deform, motion_rng)

    def labels_on(grid_shape: tuple[int, int, int], grid_affine: np.ndarray) -> tuple[np.ndarray, float]:
        points = index_to_world(grid_affine, np.indices(grid_shape).reshape(3, -1).T)
        shown = motion.backward_in_chunks(points)
        largest = float(np.linalg.norm(shown - points, axis=1).max())
        return resample_labels(source, shown).reshape(grid_shape), largest

    labels, max_displacement = labels_on(shape, affine)
    labels = labels.astype(np.uint8 if labels.max() <= np.iinfo(np.uint8).max else np.int16)
    grid = Volume(labels, affine)
    fine_shape, fine_affine, factors = fine_grid(shape, affine)
    fine_labels = labels if (factors == 1).all() else labels_on(fine_shape, fine_affine)[0]
    imaging_rng = np.random.default_rng(imaging_seed)
    posterior = WORLD_POSTERIOR @ motion.rotation  # the mask's posterior, as the output shows it (Q^T p)
    ct = block_mean(ct_intensities(fine_labels, fine_affine, imaging_rng, distractors, posterior), factors)
    ct += NOISE * imaging_rng.standard_normal(shape, dtype=np.float32)

    source_centroids = read_centroids(centroids_path, source) if centroids_path is not None else label_centroids(source)
    centroids = moved_centroids(source_centroids, motion, grid)

    paths = {
        kind: out / f"{name}_{kind}{suffix}"
        for kind, suffix in (("ct", ".nii.gz"), ("msk", ".nii.gz"), ("ctd", ".json"))
    }
    write_nifti(paths["ct"], np.clip(np.rint(ct), *HU_RANGE).astype(np.int16), grid)
    write_nifti(paths["msk"], labels, grid)
    write_centroids(paths["ctd"], centroids, grid)
    return {
        "name": name,
        **{kind: str(path) for kind, path in paths.items()},
        "shape": list(shape),
        "spacing": [float(v) for v in grid.spacing],
        "orientation": axis_codes(affine),
        "labels": [int(v) for v in np.unique(labels[labels > 0])],
        "centroids": {label: [float(v) for v in index] for label, index in centroids.items()},
        "max_displacement": max_displacement,
        "rotation": float(np.degrees(Rotation.from_matrix(motion.rotation).magnitude())),
        "shift": float(np.linalg.norm(motion.shift)),
        "tilt": float(tilt),
        "scale": float(scale),
        "distractors": bool(distractors),
    }
