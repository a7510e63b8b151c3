"""Meshes as napari Surface layer data, and a Surface layer's data as a mesh.

invrender's meshes are `x, y, z` in the stack's physical units, a voxel's centre at its index times
the voxel size; napari's surfaces are `(z, y, x)` world coordinates, where an image layer whose
`scale` is the voxel size puts a voxel's centre at its index times the scale. Reversing the
vertices' columns puts the mesh over its stack. A multi-material mesh (a foam, `.rec`) becomes one
layer per cell, each that cell's closed surface.
"""

from __future__ import annotations

import numpy as np

from invrender.core.geometry.meshes import Mesh
from invrender.napari import LayerData

#: napari colormaps given to the cells in turn (a surface of constant value shows the top colour).
CELL_COLOURMAPS = ("red", "green", "blue", "magenta", "cyan", "yellow")
#: Opacity of a surface, so that the stack stays visible through it.
SURFACE_OPACITY = 0.7


def mesh_layers(mesh: Mesh, name: str) -> list[LayerData]:
    """Surface layer data of a mesh: one layer, or one per cell of a multi-material mesh."""
    if mesh.materials is None:
        return [_surface(mesh.vertices, mesh.faces, name, 0)]
    return [
        _surface(mesh.vertices, mesh.cell_faces(cell), f"{name} cell {cell}", cell - 1)
        for cell in range(1, mesh.n_cells + 1)
        if len(mesh.cell_faces(cell))
    ]


def mesh_from_surface(data: tuple) -> Mesh:
    """The mesh (x, y, z) of a Surface layer's data `(vertices (V, 3) (z, y, x), faces (F, 3), ...)`."""
    vertices, faces = data[0], data[1]
    return Mesh(np.asarray(vertices, dtype=np.float64)[:, ::-1].copy(), np.asarray(faces, dtype=np.int64))


def _surface(vertices: np.ndarray, faces: np.ndarray, name: str, index: int) -> LayerData:
    """A surface of the vertices that `faces` use (a cell's, out of a foam's), renumbered."""
    used, renumbered = np.unique(faces, return_inverse=True)
    zyx = np.asarray(vertices, dtype=np.float64)[used][:, ::-1].copy()
    attributes = {
        "name": name,
        "colormap": CELL_COLOURMAPS[index % len(CELL_COLOURMAPS)],
        "opacity": SURFACE_OPACITY,
        "shading": "smooth",
    }
    return (zyx, renumbered.reshape(faces.shape).astype(np.int64)), attributes, "surface"
