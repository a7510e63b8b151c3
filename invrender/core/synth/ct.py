"""A synthetic CT of known vertebrae from a label mask (`invrender synth ct`): for benchmarking the
training-free vertebra segmentation (`spine-seg`), which fits deformable templates to CT.

The mask (VerSe style: one label per vertebra, 1-7 cervical, 8-19 thoracic, 20-25 lumbar) is
resampled onto an isotropic grid with the mask's own axis directions, cropped to the chosen levels
plus a margin, through a random smooth deformation: a displacement field from Gaussian-filtered
noise (autocorrelation falling to 1/e at 30 mm) scaled to a largest magnitude of `deform` mm, then
a small rigid motion (up to 3 degrees about the grid's centre, up to 2 mm of shift). The mapping is
backward: the output voxel at world x shows the source at

    T(x) = Q (x + u(x) - c) + c + t          (Q rotation, c centre, t shift, u displacement, mm)

so labels resample by nearest neighbour without holes. `deform=0` is the identity (no rigid motion
either), so the output is then the mask itself, resampled.

Intensities, in Hounsfield units, are drawn from the deformed labels as a CT shows bone: soft tissue
(40 HU with a slow variation of up to 30 HU), each vertebra a cortical shell (its outer 1.5 mm,
700-1000 HU) around cancellous bone (200-300 HU with a trabecular texture), the intervertebral
discs and joint spaces (soft tissue within 5 mm of two vertebrae) at 80 HU; then the scanner's
PSF (a Gaussian of 0.6 mm) and noise (20 HU). Every vertebra of the mask inside the grid appears in
both the CT and the output mask, also those outside the chosen levels, as in a real scan.

Written into `out`:

    <name>_ct.nii.gz     the CT, int16 HU
    <name>_msk.nii.gz    the deformed labels, uint8 (int16 beyond 255)
    <name>_ctd.json      VerSe centroids of the vertebrae inside the grid, in voxel indices of the
                         output grid: the input's body centroids moved with the deformation when
                         given, else the centroid of each deformed label
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
from invrender.core.volumes import Volume, index_to_world, read_centroids, read_label_volume, world_to_index, write_nifti

# The output grid.
MARGIN = 20.0  # mm around the chosen levels

# The motion, in mm and degrees.
CORRELATION = 30.0  # distance at which the displacement's autocorrelation falls to 1/e
NODE_SPACING = 5.0  # between the nodes of the smooth random fields, interpolated trilinearly
MAX_ROTATION = 3.0  # degrees, about a random axis through the grid's centre
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
        raise ValueError(f"no levels {levels[0]}-{levels[1]} in the mask, which has labels {present.min()}-{present.max()}")
    return np.isin(labels, chosen)


def output_grid(source: Volume, keep: np.ndarray, spacing: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """The output grid: the source's axis directions, isotropic `spacing` mm, covering the voxels
    `keep` (I, J, K bool) plus MARGIN mm, clipped to the source's field of view. Returns the shape
    and the (4, 4) affine (voxel index -> world mm)."""
    # In the frame f = spacing * index of the source's own axes, any box of source voxels is a box.
    directions = source.affine[:3, :3] / source.spacing
    index = np.argwhere(keep)
    low = np.maximum(index.min(axis=0) * source.spacing - MARGIN, 0.0)
    high = np.minimum(index.max(axis=0) * source.spacing + MARGIN, (np.array(source.shape) - 1) * source.spacing)
    shape = tuple(int(n) for n in np.floor((high - low) / spacing + 1e-9) + 1)
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing
    affine[:3, 3] = index_to_world(source.affine, low / source.spacing)
    return shape, affine


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


def smooth_field(shape: tuple[int, int, int], affine: np.ndarray, components: int, rng: np.random.Generator) -> SmoothField:
    """A `components`-vector field of Gaussian-filtered white noise over the grid (`shape`, `affine`),
    with autocorrelation falling to 1/e at CORRELATION mm, scaled so that its largest magnitude is 1
    (trilinear interpolation never exceeds its nodes' largest magnitude: a convex combination)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
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
    """The backward map T(x) = Q (x + u(x) - c) + c + t, world mm to world mm (module docstring)."""

    displacement: SmoothField  # u, mm, 3 components
    rotation: np.ndarray  # Q (3, 3)
    centre: np.ndarray  # c (3,) mm
    shift: np.ndarray  # t (3,) mm

    def backward(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world mm of output points -> (N, 3) world mm in the source that they show."""
        moved = points + self.displacement.at(points) - self.centre
        return moved @ self.rotation.T + self.centre + self.shift

    def forward(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world mm in the source -> (N, 3) world mm where the output shows them: the rigid
        part inverted exactly, then y + u(y) = q solved by the fixed-point iteration y <- q - u(y),
        a contraction while u changes by less than 1 mm per mm (its gradient stays below about
        0.06 deform per mm, so up to deform ~ 15 mm)."""
        target = (points - self.centre - self.shift) @ self.rotation + self.centre
        moved = target.copy()
        for _ in range(INVERSE_STEPS):
            moved = target - self.displacement.at(moved)
        return moved


def random_motion(shape: tuple[int, int, int], affine: np.ndarray, deform: float, rng: np.random.Generator) -> Motion:
    """A random smooth deformation of largest displacement `deform` mm plus a random rigid motion
    about the grid's centre (up to MAX_ROTATION degrees, MAX_SHIFT mm); the identity for deform=0."""
    field = smooth_field(shape, affine, 3, rng)
    field.values *= deform
    centre = index_to_world(affine, (np.array(shape)[None] - 1) / 2)[0]
    if deform == 0:
        return Motion(field, np.eye(3), centre, np.zeros(3))
    axis, direction = _unit(rng.standard_normal(3)), _unit(rng.standard_normal(3))
    angle = np.radians(rng.uniform(0, MAX_ROTATION))
    rotation = Rotation.from_rotvec(angle * axis).as_matrix()
    return Motion(field, rotation, centre, rng.uniform(0, MAX_SHIFT) * direction)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def resample_labels(source: Volume, points: np.ndarray) -> np.ndarray:
    """(N,) labels of the source (I, J, K integer) at world points (N, 3) mm, by nearest neighbour; 0
    outside the source."""
    index = world_to_index(source.affine, points).T
    return map_coordinates(source.data, index, order=0, mode="constant", cval=0)


def ct_intensities(labels: np.ndarray, affine: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(I, J, K) float32 HU of a CT showing the vertebrae `labels` (I, J, K integer) on the isotropic
    grid `affine` (4, 4): tissues as in the module docstring, then the PSF and noise."""
    spacing = float(np.linalg.norm(affine[:3, 0]))
    points = index_to_world(affine, np.indices(labels.shape).reshape(3, -1).T)
    variation = smooth_field(labels.shape, affine, 1, rng).at(points).reshape(labels.shape)
    hu = (SOFT_TISSUE + SOFT_TISSUE_VARIATION * variation).astype(np.float32)
    _paint_discs(hu, labels, spacing)
    texture = gaussian_filter(rng.standard_normal(labels.shape, dtype=np.float32), TEXTURE_GRAIN / spacing)
    texture /= texture.std()
    for label, box in _label_boxes(labels, 1):
        _paint_vertebra(hu[box], labels[box] == label, texture[box], spacing, rng)
    hu = gaussian_filter(hu, PSF_SIGMA / spacing)
    return hu + NOISE * rng.standard_normal(labels.shape, dtype=np.float32)


def _label_boxes(labels: np.ndarray, pad: int) -> list[tuple[int, tuple[slice, ...]]]:
    """(label, box) for every label present: its bounding box grown by `pad` voxels, clipped."""
    boxes = find_objects(labels)
    return [(label, tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, labels.shape)))
            for label, box in enumerate(boxes, start=1) if box is not None]


def _paint_vertebra(hu: np.ndarray, mask: np.ndarray, texture: np.ndarray, spacing: float, rng: np.random.Generator) -> None:
    """Paint one vertebra (mask, bool) into `hu` (both cropped to its box, mm `spacing`): a cortical
    shell and a textured cancellous interior, each at this vertebra's own HU."""
    # The distance from a voxel's centre to the nearest voxel outside, minus half a voxel, is its
    # depth below the surface; the outer layer of voxels is shell however coarse the grid.
    depth = distance_transform_edt(mask, sampling=spacing)
    shell = mask & (depth <= max(spacing, CORTICAL_THICKNESS + spacing / 2))
    interior = mask & ~shell
    hu[shell] = rng.uniform(*CORTICAL)
    hu[interior] = rng.uniform(*CANCELLOUS) + rng.uniform(*TEXTURE) * texture[interior]


def _paint_discs(hu: np.ndarray, labels: np.ndarray, spacing: float) -> None:
    """Paint DISC HU into the soft tissue within DISC_REACH mm of two vertebrae (I, J, K)."""
    pad = int(np.ceil(DISC_REACH / spacing))
    boxes = _label_boxes(labels, pad)
    for n, (first, a) in enumerate(boxes):
        for second, b in boxes[n + 1:]:
            if any(s.start >= t.stop or t.start >= s.stop for s, t in zip(a, b)):
                continue  # too far apart to share a disc
            box = tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b))
            crop = labels[box]
            near = [distance_transform_edt(crop != label, sampling=spacing) <= DISC_REACH for label in (first, second)]
            hu[box][(crop == 0) & near[0] & near[1]] = DISC


def label_centroids(labels: np.ndarray) -> dict[int, np.ndarray]:
    """{label: (3,) voxel index of the centroid of its voxels} for the labels in (I, J, K)."""
    present = [int(v) for v in np.unique(labels[labels > 0])]
    return dict(zip(present, np.array(center_of_mass(labels > 0, labels, present)).reshape(-1, 3)))


def moved_centroids(centroids: dict[int, np.ndarray], motion: Motion, grid: Volume) -> dict[int, np.ndarray]:
    """{label: (3,) voxel index in the output grid} of source centroids (world mm) moved forward
    through the motion, for those that land inside the grid."""
    index = world_to_index(grid.affine, motion.forward(np.array(list(centroids.values()))))
    inside = ((index >= -0.5) & (index <= np.array(grid.shape) - 0.5)).all(axis=1)
    return {label: i for label, i, keep in zip(centroids, index, inside) if keep}


def write_centroids(path: str | os.PathLike, centroids: dict[int, np.ndarray], grid: Volume) -> None:
    """Write VerSe centroid JSON: the grid's axis codes, then X, Y, Z = voxel indices i, j, k."""
    import nibabel

    entries = [{"direction": list(nibabel.aff2axcodes(grid.affine))}]
    entries += [{"label": label, "X": round(float(i), 2), "Y": round(float(j), 2), "Z": round(float(k), 2)}
                for label, (i, j, k) in sorted(centroids.items())]
    write_json(path, entries)


def default_name(labels_path: str | os.PathLike, seed: int) -> str:
    """`synth-<subject>-s<seed>`: the mask's file name without .nii(.gz) and VerSe's mask suffix."""
    stem = re.sub(r"\.nii(\.gz)?$", "", Path(labels_path).name, flags=re.IGNORECASE)
    return f"synth-{re.sub(r'(_seg-vert)?_msk$', '', stem)}-s{seed}"


def write_ct_dataset(labels_path: str | os.PathLike, out: str | os.PathLike, centroids_path: str | os.PathLike | None = None,
                     levels: tuple[int, int] | None = None, spacing: float = 1.0, deform: float = 4.0, seed: int = 0,
                     name: str | None = None) -> dict:
    """Write a synthetic CT of the vertebrae in the label mask `labels_path`, its deformed labels and
    their centroids into `out` (module docstring); deterministic for a seed.

    levels: inclusive label range whose bounding box (plus MARGIN mm) is the field of view, None for
    all; spacing: of the output grid, mm; deform: largest displacement of the smooth deformation, mm;
    centroids_path: VerSe centroids of the mask (moved with it) instead of the labels' centroids.
    Raises InputError for an unreadable mask or centroid file, ValueError for a mask without
    labels or without any in `levels`. Returns a summary: `name`, the three paths, `shape`, `spacing`, `labels` (present in
    the output mask), `centroids` ({label: voxel index}), `max_displacement` (mm, of T over the
    grid), `rotation` (degrees), `shift` (mm).
    """
    out = Path(out)
    name = name or default_name(labels_path, seed)
    source = read_label_volume(labels_path)
    shape, affine = output_grid(source, select_levels(source.data, levels), spacing)
    motion_seed, imaging_seed = np.random.SeedSequence(seed).spawn(2)
    motion = random_motion(shape, affine, deform, np.random.default_rng(motion_seed))

    points = index_to_world(affine, np.indices(shape).reshape(3, -1).T)
    shown = motion.backward(points)
    labels = resample_labels(source, shown).reshape(shape)
    labels = labels.astype(np.uint8 if labels.max() <= np.iinfo(np.uint8).max else np.int16)
    grid = Volume(labels, affine)
    ct = ct_intensities(labels, affine, np.random.default_rng(imaging_seed))

    if centroids_path is not None:
        centroids = moved_centroids(read_centroids(centroids_path, source), motion, grid)
    else:
        centroids = label_centroids(labels)

    paths = {kind: out / f"{name}_{kind}{suffix}" for kind, suffix in (("ct", ".nii.gz"), ("msk", ".nii.gz"), ("ctd", ".json"))}
    write_nifti(paths["ct"], np.clip(np.rint(ct), *HU_RANGE).astype(np.int16), grid)
    write_nifti(paths["msk"], labels, grid)
    write_centroids(paths["ctd"], centroids, grid)
    return {
        "name": name,
        **{kind: str(path) for kind, path in paths.items()},
        "shape": list(shape),
        "spacing": spacing,
        "labels": [int(v) for v in np.unique(labels[labels > 0])],
        "centroids": {label: [float(v) for v in index] for label, index in centroids.items()},
        "max_displacement": float(np.linalg.norm(shown - points, axis=1).max()),
        "rotation": float(np.degrees(Rotation.from_matrix(motion.rotation).magnitude())),
        "shift": float(np.linalg.norm(motion.shift)),
    }
