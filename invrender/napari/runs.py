"""What the widgets run: the Python API on layers' data, its results as layer data.

Plain functions (no viewer, no Qt), which `widgets` runs in a worker thread. The API is imported
when a function runs, so that the plugin's readers and writers load without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from invrender.core.geometry.meshes import Mesh
from invrender.napari import LayerData
from invrender.napari.shapes import splines_from_shapes, splines_layer
from invrender.napari.surfaces import mesh_layers


def refine_splines_layers(
    image: np.ndarray,
    paths: list[np.ndarray],
    path_attributes: dict[str, Any],
    *,
    name: str,
    config: str = "default",
    overrides: Sequence[str] = (),
    device: str = "auto",
    seed: int = 0,
) -> list[LayerData]:
    """`invrender.refine_splines` on an image `(y, x)` or `(t, y, x)` from a Shapes layer's paths
    (`splines_from_shapes`): the refined splines (Shapes) and the render (Image, hidden)."""
    import invrender

    frames, image_name = splines_from_shapes(paths, path_attributes)
    init = frames[0] if len(frames) == 1 else frames
    result = invrender.refine_splines(image, init, config=config, overrides=overrides, device=device, seed=seed)
    layers = [splines_layer(result.splines, f"{name} refined", image_name)]
    if result.render is not None:
        layers.append((result.render, {"name": f"{name} render", "visible": False}, "image"))
    return layers


def fit_mesh_layers(
    stack: np.ndarray,
    voxel_size: Sequence[float],
    *,
    name: str,
    init: Mesh | None = None,
    cells: int | None = None,
    config: str = "default",
    overrides: Sequence[str] = (),
    seed: int = 0,
) -> list[LayerData]:
    """`invrender.fit_mesh` on a stack `(z, y, x)` of voxel size `(z, y, x)`: the mesh (a Surface
    per cell, physical units) and the render (Image at the stack's scale, hidden)."""
    import invrender

    result = invrender.fit_mesh(
        stack, voxel_size=voxel_size, init=init, cells=cells, config=config, overrides=overrides, seed=seed
    )
    render = (result.render, {"name": f"{name} render", "scale": tuple(voxel_size), "visible": False}, "image")
    return [*mesh_layers(result.mesh, f"{name} mesh"), render]


def segment_cells_layers(
    frames: np.ndarray,
    *,
    name: str,
    stage: str = "1",
    config: str = "default",
    overrides: Sequence[str] = (),
    seed: int = 0,
) -> list[LayerData]:
    """`invrender.segment_cells` on a time-lapse `(t, y, x)` or an image `(y, x)`: the labels
    (Labels, the input's shape) and, for a time-lapse, the cells' tracks (Tracks)."""
    import invrender

    result = invrender.segment_cells(frames, stage=stage, config=config, overrides=overrides, seed=seed)
    labels = result.labels if np.ndim(frames) == 3 else result.labels[0]
    layers = [(labels, {"name": f"{name} labels"}, "labels")]
    if np.ndim(frames) == 3:
        layers.append(tracks_layer(result.records, result.tracks, f"{name} tracks"))
    return layers


def tracks_layer(records: list[dict], tracks: np.ndarray, name: str) -> LayerData:
    """Tracks layer data of cell-seg's per-frame cells (`"frame"`, cells' `"label"` and `"centre"`
    `[x, y]`) and CTC tracks `(label, first, last, parent)`: rows `(label, frame, y, x)` and the
    graph {daughter: [mother]}."""
    rows = [
        (cell["label"], record["frame"], cell["centre"][1], cell["centre"][0])
        for record in records
        for cell in record["cells"]
    ]
    data = np.array(sorted(rows), dtype=np.float64).reshape(-1, 4)
    graph = {int(label): [int(parent)] for label, _, _, parent in tracks if parent}
    return data, {"name": name, "graph": graph}, "tracks"
