"""The picture of a mesh-fit: three orthogonal slices of the stack through the mesh's centre with the
mesh's cross-sections drawn on them, and the same three slices of the render; axes in the stack's
physical units (x, y, z as the mesh's vertices; the stack and the render are (z, y, x))."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from invrender.core.figures import RESULT, Style, add_legend, draw_curves, label_style, new_figure, show_image
from invrender.core.geometry.meshes import Mesh
from invrender.core.geometry.sections import plane_section

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SLICES_SIZE = (1500, 1000)  # px: two rows (stack, render) of three planes
AXES = "xyz"
#: The planes shown: the axis normal to each (0 x, 1 y, 2 z), and the axes across and down the slice.
PLANES = ((2, 0, 1), (1, 0, 2), (0, 1, 2))


def mesh_layers(mesh: Mesh) -> list[tuple[Style, np.ndarray]]:
    """The faces (F, 3) to cut and their style: the whole surface in the result's style, or for a
    multi-material mesh each cell's closed surface in the cell's colour."""
    if mesh.materials is None:
        return [(RESULT, mesh.faces)]
    return [(label_style(cell, f"cell {cell}"), mesh.cell_faces(cell)) for cell in range(1, mesh.n_cells + 1)]


def centre_voxel(mesh: Mesh, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """(3,) x, y, z: the index of the voxel nearest to the centre of the mesh's bounding box, within
    the stack (shape and spacing (z, y, x); voxel centres at index x spacing)."""
    sizes = np.asarray(spacing[::-1], dtype=np.float64)
    centre = (mesh.vertices.min(axis=0) + mesh.vertices.max(axis=0)) / 2
    return np.clip(np.round(centre / sizes).astype(int), 0, np.asarray(shape[::-1]) - 1)


def mesh_slices(
    stack: np.ndarray, render: np.ndarray, spacing: tuple[float, float, float], mesh: Mesh, title: str
) -> Figure:
    """The stack (z, y, x) and its render (same shape) sliced through `centre_voxel` along the three
    axes, with the mesh's (physical x, y, z) cross-section by each slice's plane; voxel size
    `spacing` (z, y, x). Slices are shown with their first row at the top; SLICES_SIZE px."""
    sizes = np.asarray(spacing[::-1], dtype=np.float64)  # x y z
    counts = np.asarray(stack.shape[::-1])  # x y z
    index = centre_voxel(mesh, stack.shape, spacing)
    layers = mesh_layers(mesh)
    figure = new_figure(SLICES_SIZE)
    axes = figure.subplots(2, 3)
    for row, (name, volume) in enumerate((("stack", stack), ("render", render))):
        window = tuple(np.percentile(volume, [0.5, 99.5]))
        for ax, (normal, across, down) in zip(axes[row], PLANES):
            # The volume's axes are z y x (array axis 2 - a for axis a); what remains is (down, across).
            image = np.take(volume, index[normal], axis=2 - normal)
            extent = (
                -sizes[across] / 2,
                (counts[across] - 0.5) * sizes[across],
                (counts[down] - 0.5) * sizes[down],
                -sizes[down] / 2,
            )
            position = index[normal] * sizes[normal]
            show_image(ax, image, f"{name}, {AXES[normal]} = {position:.4g}", extent, window)
            for style, faces in layers:
                segments = plane_section(mesh.vertices, faces, normal, position)[..., [across, down]]
                draw_curves(ax, list(segments), style)
            ax.set(xlabel=AXES[across], ylabel=AXES[down])
    voxel = ", ".join(f"{s:g}" for s in spacing)
    figure.suptitle(f"{title}: slices through the mesh's centre, physical units (voxel size z, y, x = {voxel})")
    add_legend(figure, [style for style, _ in layers])
    return figure
