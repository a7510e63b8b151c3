"""What a real CT shows around the vertebrae, for the synthetic CTs' `distractors` option: the
structures that a vertebra's fit can mistake for its own bone or boundary.

- Ribs (thoracic vertebrae, both sides): bone tubes whose heads touch the vertebral body's
  posterolateral corner and which pass the transverse process before curving forward, a cortical
  shell around marrow, the intensities of vertebral bone.
- The aorta with contrast (arterial phase): a tube in front of and left of the bodies, 2 mm from
  them, as bright as cancellous bone.
- The kidneys with contrast beside L1-L2.
- The lungs (air) beside and in front of the thoracic vertebrae, down to the diaphragm at T12.

Everything is placed in each vertebra's frame (superior, posterior, left; `methods/spine_seg/frames.py`)
from the deformed labels themselves: the body centre is the centroid of the label's voxels in front
of its centroid, and lengths scale with the spacing of the bodies (the person's size). Painted only
into soft tissue: vertebra labels are never overwritten, so the label mask stays the truth.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import distance_transform_edt

from invrender.core.volumes import VERTEBRA_NAMES, affine_spacing, index_to_world, world_to_index
from invrender.methods.spine_seg.frames import cranial_order, vertebra_frames

#: The thoracic VerSe codes: T1-T12 and T13; ribs and lungs belong to these.
THORACIC = {code for code, name in VERTEBRA_NAMES.items() if name.startswith("T")}
#: The lengths below are for this spacing of the bodies (mm); they scale with the actual one.
TYPICAL_SPACING = 27.0

#: A rib's centre line in its vertebra's frame, (superior, posterior, left) mm, the left rib (the right
#: one mirrored): head on the body's posterolateral corner, tubercle at the transverse process, then
#: the shaft curving laterally and forward, falling as it goes.
RIB_LINE = np.array(
    [
        [1.0, 4.0, 15.0],
        [-2.0, 20.0, 30.0],
        [-8.0, 24.0, 48.0],
        [-18.0, 12.0, 72.0],
        [-32.0, -15.0, 92.0],
        [-48.0, -55.0, 100.0],
        [-60.0, -95.0, 90.0],
    ]
)
RIB_RADIUS, RIB_CORTEX = 5.0, 1.2  # mm
RIB_CORTICAL, RIB_MARROW = (700.0, 900.0), 250.0  # HU
AORTA_RADIUS, AORTA_GAP, AORTA_LEFT, AORTA_HU = 11.0, 2.0, 8.0, 250.0  # mm, mm, mm, HU
#: Each kidney: centre (superior, posterior, left) mm from the mean body centre of L1 and L2 (left;
#: the right one mirrored and 15 mm lower), semi-axes along the same axes, HU.
KIDNEY_CENTRE, KIDNEY_AXES, KIDNEY_HU = np.array([0.0, 15.0, 60.0]), np.array([50.0, 25.0, 28.0]), 170.0
KIDNEY_LEVELS = (20, 21)
#: Each lung: an elliptic cylinder along the superior axis of the lowest thoracic vertebra, centred
#: at (posterior, |left|), with these semi-axes, rounded off below the diaphragm; air HU; soft tissue
#: (pleura, muscle) kept within LUNG_CLEARANCE mm of bone.
LUNG_CENTRE, LUNG_AXES, LUNG_FLOOR = np.array([-5.0, 80.0]), np.array([75.0, 55.0]), 40.0
LUNG_HU, LUNG_CLEARANCE = -850.0, 5.0


def paint_surroundings(
    hu: np.ndarray, labels: np.ndarray, affine: np.ndarray, posterior: np.ndarray, rng: np.random.Generator
) -> None:
    """Paint ribs, aorta, kidneys and lungs into `hu` (I, J, K, HU) around the vertebrae `labels`
    (I, J, K) on the grid `affine` (4, 4); `posterior` (3,) the person's posterior direction. Needs
    at least two vertebrae (the frames); with fewer nothing is painted."""
    bodies, fronts = _bodies(labels, affine, posterior)
    if len(bodies) < 2:
        return
    frames = vertebra_frames(bodies, posterior)
    chain = sorted(bodies, key=cranial_order)
    soft = labels == 0
    solid = ~soft
    for label in chain:
        if label in THORACIC:
            for side in (1.0, -1.0):
                line = _to_world(RIB_LINE * [1.0, 1.0, side], bodies[label], *frames[label])
                solid |= _paint_tube(
                    hu, soft, affine, line, RIB_RADIUS, RIB_CORTEX, rng.uniform(*RIB_CORTICAL), RIB_MARROW
                )
    aorta = [bodies[m] + frames[m][0] @ [0.0, fronts[m] - AORTA_GAP - AORTA_RADIUS, AORTA_LEFT] for m in chain]
    ends = [2 * aorta[0] - aorta[1], *aorta, 2 * aorta[-1] - aorta[-2]]  # on past the first and last vertebra
    solid |= _paint_tube(hu, soft, affine, np.array(ends), AORTA_RADIUS, 0.0, AORTA_HU, AORTA_HU)
    kidney_levels = [m for m in KIDNEY_LEVELS if m in bodies]
    if kidney_levels:
        centre = np.mean([bodies[m] for m in kidney_levels], axis=0)
        rotation, spacing = frames[kidney_levels[0]]
        for side, lower in ((1.0, 0.0), (-1.0, 15.0)):
            offset = (KIDNEY_CENTRE - [lower, 0.0, 0.0]) * [1.0, 1.0, side]
            solid |= _paint_ellipsoid(
                hu,
                soft,
                affine,
                _to_world(offset[None], centre, rotation, spacing)[0],
                rotation,
                KIDNEY_AXES * spacing / TYPICAL_SPACING,
                KIDNEY_HU,
            )
    thoracic = [m for m in chain if m in THORACIC]
    if thoracic:
        _paint_lungs(hu, soft & ~solid, solid, affine, bodies[thoracic[-1]], *frames[thoracic[-1]])


def _bodies(
    labels: np.ndarray, affine: np.ndarray, posterior: np.ndarray
) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """Per label: the body centre (3,) world mm, the centroid of its voxels in front of the label's
    centroid along `posterior`; and the front (mm along `posterior` from the body centre, < 0) of its
    most anterior voxel."""
    bodies, fronts = {}, {}
    for label in (int(v) for v in np.unique(labels) if v > 0 and int(v) in VERTEBRA_NAMES):
        points = index_to_world(affine, np.argwhere(labels == label))
        depth = (points - points.mean(axis=0)) @ posterior
        body = points[depth < 0].mean(axis=0) if (depth < 0).any() else points.mean(axis=0)
        bodies[label] = body
        fronts[label] = float(((points - body) @ posterior).min())
    return bodies, fronts


def _to_world(local: np.ndarray, centre: np.ndarray, rotation: np.ndarray, spacing: float) -> np.ndarray:
    """(N, 3) world mm of points (N, 3) given in a vertebra's frame for the typical body spacing."""
    return centre + (local * spacing / TYPICAL_SPACING) @ rotation.T


def _box(
    affine: np.ndarray, shape: tuple[int, ...], low: np.ndarray, high: np.ndarray
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The voxels of the grid within the world box [low, high] (3,): their index box (slices) and
    their world points (N, 3), C order; None when the box misses the grid."""
    corners = np.array(np.meshgrid(*zip(low, high), indexing="ij")).reshape(3, -1).T
    index = world_to_index(affine, corners)
    start = np.clip(np.floor(index.min(axis=0)).astype(int), 0, shape)
    stop = np.clip(np.ceil(index.max(axis=0)).astype(int) + 1, 0, shape)
    if np.any(stop <= start):
        return None
    box = tuple(slice(a, b) for a, b in zip(start, stop))
    grid = np.indices(stop - start).reshape(3, -1).T + start
    return box, index_to_world(affine, grid)


def distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """(N,) distance mm from each point (N, 3) to the polyline through `line` (K, 3)."""
    best = np.full(len(points), np.inf)
    for a, b in zip(line[:-1], line[1:]):
        segment = b - a
        t = np.clip((points - a) @ segment / max(segment @ segment, 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - a - t[:, None] * segment, axis=1))
    return best


def _paint(
    hu: np.ndarray,
    soft: np.ndarray,
    affine: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    shade: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Paint a shape within the world box [low, high] (3,) into the soft tissue: `shade` gives the
    box's world points (N, 3) their HU (N,), NaN outside the shape. Returns (I, J, K) bool: the
    painted voxels."""
    painted = np.zeros(hu.shape, dtype=bool)
    found = _box(affine, hu.shape, low, high)
    if found is None:
        return painted
    box, points = found
    values = shade(points).reshape(hu[box].shape)
    inside = ~np.isnan(values) & soft[box]
    hu[box][inside] = values[inside]
    painted[box] = inside
    return painted


def _paint_tube(
    hu: np.ndarray,
    soft: np.ndarray,
    affine: np.ndarray,
    line: np.ndarray,
    radius: float,
    cortex: float,
    shell_hu: float,
    core_hu: float,
) -> np.ndarray:
    """Paint a tube of `radius` mm around the polyline `line` (K, 3) into the soft tissue: its outer
    `cortex` mm at `shell_hu`, the rest at `core_hu`. Returns (I, J, K) bool: the painted voxels."""

    def shade(points: np.ndarray) -> np.ndarray:
        distance = distance_to_polyline(points, line)
        return np.where(distance > radius, np.nan, np.where(distance > radius - cortex, shell_hu, core_hu))

    return _paint(hu, soft, affine, line.min(axis=0) - radius, line.max(axis=0) + radius, shade)


def _paint_ellipsoid(
    hu: np.ndarray,
    soft: np.ndarray,
    affine: np.ndarray,
    centre: np.ndarray,
    rotation: np.ndarray,
    axes: np.ndarray,
    value: float,
) -> np.ndarray:
    """Paint the ellipsoid of semi-axes `axes` (3,) mm along the columns of `rotation` about `centre`
    into the soft tissue at `value` HU. Returns (I, J, K) bool: the painted voxels."""

    def shade(points: np.ndarray) -> np.ndarray:
        local = (points - centre) @ rotation / axes
        return np.where((local**2).sum(axis=1) <= 1.0, value, np.nan)

    reach = axes.max()
    return _paint(hu, soft, affine, centre - reach, centre + reach, shade)


def _paint_lungs(
    hu: np.ndarray,
    free: np.ndarray,
    solid: np.ndarray,
    affine: np.ndarray,
    lowest: np.ndarray,
    rotation: np.ndarray,
    spacing: float,
) -> None:
    """Paint air into `free` voxels inside the lungs (module constants), in the frame of the lowest
    thoracic vertebra (body centre `lowest`), away from `solid` (bone, vessels, organs) by LUNG_CLEARANCE."""
    size = spacing / TYPICAL_SPACING
    clearance = distance_transform_edt(~solid, sampling=affine_spacing(affine)) > LUNG_CLEARANCE
    points = index_to_world(affine, np.indices(hu.shape).reshape(3, -1).T)
    local = ((points - lowest) @ rotation / size).astype(np.float32)  # (superior, posterior, left), typical mm
    floor = np.maximum(0.0, (LUNG_FLOOR - 0.3 * TYPICAL_SPACING) - local[:, 0]) / LUNG_FLOOR
    radius = ((local[:, 1] - LUNG_CENTRE[0]) / LUNG_AXES[0]) ** 2 + (
        (np.abs(local[:, 2]) - LUNG_CENTRE[1]) / LUNG_AXES[1]
    ) ** 2
    lung = (radius + floor**2 <= 1.0).reshape(hu.shape) & free & clearance
    hu[lung] = LUNG_HU
