"""Meshes as napari Surface layer data, and a Surface layer's data as a mesh.

invrender's meshes are `x, y, z` in the stack's physical units, a voxel's centre at its index times
the voxel size; napari's surfaces are `(z, y, x)` world coordinates, where an image layer whose
`scale` is the voxel size puts a voxel's centre at its index times the scale. Reversing the
vertices' columns puts the mesh over its stack. A multi-material mesh (a foam, `.rec`) becomes one
layer per cell, each that cell's closed surface.

spine-seg's meshes are in world mm (RAS) instead, and a CT opens in napari on its voxel grid: a
vertex goes through the inverse affine of the volume it lies over (`images.world_to_layer`).
"""

from __future__ import annotations

import os

import numpy as np

from invrender.core.geometry.meshes import Mesh
from invrender.core.volumes import LPS_TO_RAS, VERTEBRA_NAMES
from invrender.napari import LayerData
from invrender.napari.images import GRID_UNITS, layer_units, world_to_grid_layer, world_to_layer

#: napari colormaps given to the cells in turn (a surface of constant value shows the top colour).
CELL_COLOURMAPS = ("red", "green", "blue", "magenta", "cyan", "yellow")
#: Opacity of a surface, so that the stack stays visible through it.
SURFACE_OPACITY = 0.7


def mesh_layers(mesh: Mesh, name: str, units: tuple[str, ...] | None = None) -> list[LayerData]:
    """Surface layer data of a mesh: one layer, or one per cell of a multi-material mesh; `units`:
    the stack's layer's, when known."""
    zyx = mesh.vertices[:, ::-1]
    if mesh.materials is None:
        return [_surface(zyx, mesh.faces, name, 0, units)]
    return [
        _surface(zyx, mesh.cell_faces(cell), f"{name} cell {cell}", cell - 1, units)
        for cell in range(1, mesh.n_cells + 1)
        if len(mesh.cell_faces(cell))
    ]


def world_mesh_layer(mesh: Mesh, space: str, grid: str | os.PathLike, name: str, index: int) -> LayerData:
    """Surface layer data of a mesh in world mm (x, y, z in `space`, "RAS" or "LPS") over the volume
    at `grid` (NIfTI or TIFF) as the plugin opens it; `index` picks its colour."""
    ras = mesh.vertices @ LPS_TO_RAS[:3, :3] if space == "LPS" else mesh.vertices
    return _surface(world_to_layer(grid, ras), mesh.faces, name, index, layer_units(grid))


def vertebra_layers(meshes: dict[int, Mesh], affine: np.ndarray, name: str) -> list[LayerData]:
    """Surface layer data of spine-seg's meshes (world mm, RAS) per VerSe label over the CT `(i, j, k)`
    with voxel-to-world `affine` as the plugin opens it (`images.grid_attributes`), each named after
    its vertebra and coloured as the reader colours it."""
    layers = []
    for label, mesh in meshes.items():
        vertices = world_to_grid_layer(affine, mesh.vertices)
        layers.append(
            _surface(vertices, mesh.faces, f"{name} {VERTEBRA_NAMES[label]}", vertebra_colour(label), GRID_UNITS)
        )
    return layers


def vertebra_colour(label: int) -> int:
    """The colour index of a vertebra's surface (VerSe code): its place in the spine, so that
    neighbours differ."""
    return list(VERTEBRA_NAMES).index(label)


def mesh_from_surface(data: tuple) -> Mesh:
    """The mesh (x, y, z) of a Surface layer's data `(vertices (V, 3) (z, y, x), faces (F, 3), ...)`."""
    vertices, faces = data[0], data[1]
    return Mesh(np.asarray(vertices, dtype=np.float64)[:, ::-1].copy(), np.asarray(faces, dtype=np.int64))


def _surface(
    vertices: np.ndarray, faces: np.ndarray, name: str, index: int, units: tuple[str, ...] | None = None
) -> LayerData:
    """A surface of the vertices (in napari's axis order) that `faces` use (a cell's, out of a
    foam's), renumbered, in `units` (None: napari's default, pixels)."""
    used, renumbered = np.unique(faces, return_inverse=True)
    points = np.ascontiguousarray(np.asarray(vertices, dtype=np.float64)[used])
    attributes = {
        "name": name,
        "colormap": CELL_COLOURMAPS[index % len(CELL_COLOURMAPS)],
        "opacity": SURFACE_OPACITY,
        "shading": "smooth",
    }
    if units is not None:
        attributes["units"] = units
    return (points, renumbered.reshape(faces.shape).astype(np.int64)), attributes, "surface"
