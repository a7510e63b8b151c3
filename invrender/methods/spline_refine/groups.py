"""Which bodies of a frame can interact, and the crop each group of them is fitted in.

On a whole plate most worms are far apart: fitting all of them jointly makes every step render
every body into the whole frame, so a frame's cost grows with its area times its worms. A body can
only lie within `reach` px of its init polyline (the init's error plus half the body's width), so
two bodies whose init polylines stay more than 2 * reach apart can never overlap: they are fitted
separately, each group of bodies that might touch in the bounding box of its polylines grown by
reach. What else reaches into a group's crop (parts of other groups' bodies) is painted over with
the local background before the fit, so the fit never tries to explain it. Groups of as many
bodies are fitted side by side in one model (`batches_by_body_count`), their crops grown to one size.

Coordinates are pixels, points `[x, y]` as in the spline files; images are indexed (y, x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

#: Sigma (px) of the normalised convolution that estimates the background under painted-over bodies.
BACKGROUND_SIGMA = 8.0


@dataclass(frozen=True)
class Crop:
    """A group of bodies (indices into the frame's records) and its box: rows y0:y1, columns x0:x1."""

    members: list[int]
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def offset(self) -> np.ndarray:
        """The crop's origin [x, y] in the frame's pixels."""
        return np.array([self.x0, self.y0], dtype=np.float64)

    @property
    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)

    def take(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0 : self.y1, self.x0 : self.x1]

    def grown_to(self, height: int, width: int, shape: tuple[int, int]) -> Crop:
        """The crop grown about its centre to `height` x `width` px (at least its own size, at most
        `shape`), shifted to lie within an image of `shape`."""
        y0 = min(max(0, self.y0 - (height - (self.y1 - self.y0)) // 2), shape[0] - height)
        x0 = min(max(0, self.x0 - (width - (self.x1 - self.x0)) // 2), shape[1] - width)
        return Crop(self.members, y0, y0 + height, x0, x0 + width)


def densify(points: np.ndarray, spacing: float = 1.0) -> np.ndarray:
    """The polyline `points (K, 2)` resampled with at most `spacing` px between neighbours."""
    points = np.asarray(points, dtype=np.float64)
    pieces = [points[:1]]
    for a, b in zip(points[:-1], points[1:]):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / spacing)))
        pieces.append(a + (b - a) * (np.arange(1, n + 1) / n)[:, None])
    return np.concatenate(pieces)


def interacting_groups(polylines: list[np.ndarray], reach: float) -> list[list[int]]:
    """Groups (lists of indices, ascending, ordered by first member) of the polylines that come
    within `2 * reach` px of each other, directly or through other members."""
    dense = [densify(p) for p in polylines]
    owner = np.concatenate([np.full(len(d), i) for i, d in enumerate(dense)])
    pairs = cKDTree(np.concatenate(dense)).query_pairs(2 * reach, output_type="ndarray")
    n = len(polylines)
    links = coo_matrix((np.ones(len(pairs)), (owner[pairs[:, 0]], owner[pairs[:, 1]])), shape=(n, n))
    _, labels = connected_components(links, directed=False)
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    return sorted(groups.values())


def crops(polylines: list[np.ndarray], groups: list[list[int]], reach: float, shape: tuple[int, int]) -> list[Crop]:
    """Each group's box: the bounding box of its polylines grown by `reach`, within the image."""
    H, W = shape
    boxes = []
    for members in groups:
        points = np.concatenate([polylines[i] for i in members])
        low = np.floor(points.min(axis=0) - reach).astype(int)
        high = np.ceil(points.max(axis=0) + reach).astype(int) + 1
        boxes.append(Crop(members, max(0, low[1]), min(H, high[1]), max(0, low[0]), min(W, high[0])))
    return boxes


def batches_by_body_count(boxes: list[Crop]) -> list[list[int]]:
    """The crops (indices into `boxes`) that are fitted side by side in one model: those of groups
    with as many bodies, in order of their first crop. A step has a large fixed cost, paid once for
    all crops of a batch; an inactive body would cost every start a splat and an image of its own,
    while the pixels by which a crop grows to the batch's size cost less."""
    batches: dict[int, list[int]] = {}
    for index, box in enumerate(boxes):
        batches.setdefault(len(box.members), []).append(index)
    return list(batches.values())


def nearest_group(polylines: list[np.ndarray], groups: list[list[int]], shape: tuple[int, int]):
    """For every pixel, the group whose polylines are nearest, and the distance to them in px.

    Returns `(labels (H, W) int, distance (H, W) float)`."""
    H, W = shape
    seeds = np.full(shape, -1, dtype=np.int64)
    for g, members in enumerate(groups):
        for i in members:
            xy = np.rint(densify(polylines[i], 0.5)).astype(int)
            inside = (xy[:, 0] >= 0) & (xy[:, 0] < W) & (xy[:, 1] >= 0) & (xy[:, 1] < H)
            seeds[xy[inside, 1], xy[inside, 0]] = g
    if (seeds < 0).all():  # every polyline outside the image
        return np.zeros(shape, dtype=np.int64), np.full(shape, np.inf)
    distance, (rows, cols) = distance_transform_edt(seeds < 0, return_indices=True)
    return seeds[rows, cols], distance


def local_background(image: np.ndarray, bodies: np.ndarray) -> np.ndarray:
    """The image's smooth background where `bodies` (bool, H x W) hides it: a Gaussian average of
    the pixels outside the bodies (a normalised convolution)."""
    keep = (~bodies).astype(np.float64)
    weight = gaussian_filter(keep, BACKGROUND_SIGMA, mode="nearest")
    total = gaussian_filter(image * keep, BACKGROUND_SIGMA, mode="nearest")
    fallback = float(np.median(image[~bodies])) if (~bodies).any() else float(np.median(image))
    return np.where(weight > 1e-6, total / np.maximum(weight, 1e-6), fallback)
