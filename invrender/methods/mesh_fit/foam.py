"""A foam of N cells as one multi-material mesh: the initial shape for a cluster of cells.

The stack's foreground (its bright membranes, closed and filled) is split into N cells around seed
points found by k-means on the foreground voxels (a Voronoi partition inside the foreground), on
a grid coarser than the stack's. Separate clusters (the foreground's connected components) share
the N cells in proportion to their volumes and are split apart, so that no cell spans two clusters
(k-means over all of them at once gave one cluster of 4 cells 5 seeds and the other 3); components
too small for a cell of their own are left out. The cells' boundaries are taken as the faces
between grid cells of different labels ("cuberille"): every face carries the materials on its two sides (0 outside),
vertices are the grid's corners and are shared, so interfaces are single faces between two cells
and every cell is closed. A few steps of Laplacian smoothing round off the staircase.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2

from invrender.core.geometry.meshes import Mesh
from invrender.core.optim.largesteps import uniform_laplacian


def foam_labels(stack: np.ndarray, n_cells: int, bright_fraction: float, step: int, seed: int) -> np.ndarray:
    """(z, y, x) labels 0..n_cells on the grid of every `step`-th voxel."""
    smooth = ndimage.gaussian_filter(stack.astype(np.float64), 1.0)
    membranes = smooth > bright_fraction * np.percentile(smooth, 99.9)
    foreground = ndimage.binary_fill_holes(ndimage.binary_closing(membranes, iterations=2))
    coarse = foreground[::step, ::step, ::step]
    components, count = ndimage.label(coarse)
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    if sizes.sum() < n_cells:
        raise ValueError(f"the bright region has {sizes.sum()} voxels on the coarse grid, fewer than {n_cells} cells")
    grid = np.zeros(coarse.shape, dtype=np.int64)
    first = 1
    for component, cells in enumerate(share_cells(sizes, n_cells), start=1):
        if cells == 0:
            continue
        points = np.argwhere(components == component).astype(np.float64)
        _, labels = kmeans2(points, cells, seed=seed, minit="++")
        grid[tuple(points.astype(int).T)] = labels + first
        first += cells
    return grid


def share_cells(sizes: np.ndarray, n_cells: int) -> np.ndarray:
    """How many of `n_cells` each component gets: in proportion to its size (largest remainders),
    never more than its voxels."""
    quota = n_cells * sizes / sizes.sum()
    shares = np.minimum(np.floor(quota).astype(np.int64), sizes)
    for index in np.argsort(-(quota - shares), kind="stable"):
        if shares.sum() == n_cells:
            break
        if shares[index] < sizes[index]:
            shares[index] += 1
    return shares


def cuberille_mesh(labels: np.ndarray, spacing: tuple[float, float, float]) -> Mesh:
    """The multi-material mesh of the faces between grid cells of different labels (x, y, z
    physical coordinates; a grid cell (k, j, i) spans [i, i+1] x [j, j+1] x [k, k+1] times spacing,
    shifted by half a cell so that its centre sits at the voxel centre)."""
    padded = np.pad(labels, 1)
    unit = np.eye(3, dtype=np.int64)
    quads, materials = [], []
    for axis in range(3):
        n = padded.shape[axis]
        low, high = np.take(padded, np.arange(n - 1), axis=axis), np.take(padded, np.arange(1, n), axis=axis)
        cells = np.argwhere(low != high)  # the cell on the low side of each face (padded indices)
        plane = cells + unit[axis]  # the face's corner with the smallest indices
        u, v = (unit[a] for a in range(3) if a != axis)
        quads.append(np.stack([plane, plane + u, plane + u + v, plane + v], axis=1))
        materials.append(np.stack([low[tuple(cells.T)], high[tuple(cells.T)]], axis=1))
    quads, materials = np.concatenate(quads), np.concatenate(materials)
    corners, index = np.unique(quads.reshape(-1, 3), axis=0, return_inverse=True)
    index = index.reshape(-1, 4)
    triangles = np.concatenate([index[:, [0, 1, 2]], index[:, [0, 2, 3]]])
    # corner (k, j, i) of the padded grid is at ((i - 1.5), (j - 1.5), (k - 1.5)) cells, x y z
    zyx = (corners - 1.5) * np.asarray(spacing)
    return Mesh(
        zyx[:, ::-1].copy(), triangles.astype(np.int64), np.concatenate([materials, materials]).astype(np.int64)
    )


def smooth(mesh: Mesh, iterations: int, rate: float = 0.5) -> Mesh:
    """Uniform Laplacian smoothing: each vertex moves `rate` of the way to its neighbours' mean."""
    lap = uniform_laplacian(len(mesh.vertices), mesh.faces)
    degree = lap.diagonal()
    vertices = mesh.vertices.copy()
    for _ in range(iterations):
        vertices = vertices - rate * (lap @ vertices) / degree[:, None]
    return Mesh(vertices, mesh.faces, mesh.materials)


def foam_mesh(
    stack: np.ndarray,
    spacing: tuple[float, float, float],
    n_cells: int,
    bright_fraction: float,
    step: int,
    iterations: int,
    seed: int,
) -> Mesh:
    labels = foam_labels(stack, n_cells, bright_fraction, step, seed)
    mesh = cuberille_mesh(labels, tuple(s * step for s in spacing))
    return smooth(mesh, iterations)
