"""What the widgets run: the Python API on layers' data, its results as layer data.

Plain functions (no viewer, no Qt), which `widgets` runs in a worker thread. Each passes `run`, the
API's own keywords (`config`, `overrides`, `seed`, `device`, and `progress`: the step callback
`(phase, step, steps, loss)`, called in that thread), to its API function as they are. The API is
imported when a function runs, so that the plugin's readers and writers load without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from invrender.core.geometry.meshes import Mesh
from invrender.core.volumes import VERTEBRA_NAMES, vertebra_code
from invrender.napari import LayerData
from invrender.napari.images import grid_attributes
from invrender.napari.shapes import splines_from_shapes, splines_layer
from invrender.napari.surfaces import mesh_layers, vertebra_layers
from invrender.napari.tracks import cell_tracks_layer


def refine_splines_layers(
    image: np.ndarray,
    paths: list[np.ndarray],
    path_attributes: dict[str, Any],
    *,
    name: str,
    **run: Any,
) -> list[LayerData]:
    """`invrender.refine_splines` on an image `(y, x)` or `(t, y, x)` from a Shapes layer's paths
    (`splines_from_shapes`): the refined splines (Shapes) and the render (Image, hidden)."""
    import invrender

    frames, image_name = splines_from_shapes(paths, path_attributes)
    init = frames[0] if len(frames) == 1 else frames
    result = invrender.refine_splines(image, init, **run)
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
    units: tuple[str, ...] | None = None,
    **run: Any,
) -> list[LayerData]:
    """`invrender.fit_mesh` on a stack `(z, y, x)` of voxel size `(z, y, x)` (in `units`, the stack
    layer's): the mesh (a Surface per cell, physical units) and the render (Image at the stack's
    scale, hidden), both in those units."""
    import invrender

    result = invrender.fit_mesh(stack, voxel_size=voxel_size, init=init, cells=cells, **run)
    render_attributes = {"name": f"{name} render", "scale": tuple(voxel_size), "visible": False}
    if units is not None:
        render_attributes["units"] = units
    return [*mesh_layers(result.mesh, f"{name} mesh", units), (result.render, render_attributes, "image")]


def segment_cells_layers(
    frames: np.ndarray,
    *,
    name: str,
    stage: str = "1",
    **run: Any,
) -> list[LayerData]:
    """`invrender.segment_cells` on a time-lapse `(t, y, x)` or an image `(y, x)`: the labels
    (Labels, the input's shape) and, for a time-lapse, the cells' tracks (Tracks)."""
    import invrender

    result = invrender.segment_cells(frames, stage=stage, **run)
    labels = result.labels if np.ndim(frames) == 3 else result.labels[0]
    layers = [(labels, {"name": f"{name} labels"}, "labels")]
    if np.ndim(frames) == 3:
        layers.append(cell_tracks_layer(result.records, result.tracks, f"{name} tracks"))
    return layers


def segment_spine_layers(
    volume: np.ndarray,
    affine: np.ndarray | None,
    centroids: np.ndarray,
    *,
    name: str,
    names: Sequence[str | int] | None = None,
    top: str = "L1",
    **run: Any,
) -> list[LayerData]:
    """`invrender.segment_spine` on a CT `(i, j, k)` with its voxel-to-world `affine` (mm, RAS+;
    what the plugin's reader keeps in the layer's metadata) from (N, 3) vertebral-body centroids in
    voxel indices: the labels (Labels on the CT's grid) and a Surface per vertebra over it. The
    centroids are named by `names` (VerSe names or codes, one per point), else `top` names the most
    superior and the others the vertebrae below it in turn (`centroid_labels`)."""
    import invrender
    from invrender.core.volumes import index_to_world

    if affine is None:
        raise ValueError(
            f"{name}: no affine in the layer's metadata: open the CT with invrender's reader (NIfTI or DICOM), "
            "which keeps its orientation"
        )
    world = index_to_world(affine, np.asarray(centroids, dtype=np.float64).reshape(-1, 3))
    labels = centroid_labels(world, top) if names is None else [vertebra_code(n) for n in names]
    if len(set(labels)) < len(labels):
        raise ValueError(f"centroids: a vertebra is named twice ({', '.join(VERTEBRA_NAMES[c] for c in labels)})")
    result = invrender.segment_spine(volume, affine, dict(zip(labels, world)), **run)
    labels_layer = (result.labels, grid_attributes(f"{name} labels", affine), "labels")
    return [labels_layer, *vertebra_layers(result.meshes, affine, name)]


#: Vertebrae from the top of the spine down, as most spines have them (T13 and L6, which some
#: have, are given by naming the points instead).
SPINE_ORDER = tuple(code for code, vertebra in VERTEBRA_NAMES.items() if vertebra not in ("T13", "L6"))


def centroid_labels(world: np.ndarray, top: str) -> list[int]:
    """VerSe codes of (N, 3) vertebral-body centroids in world mm (RAS+), given unnamed: the most
    superior (largest S) is `top` (e.g. "T12"), the next ones down the vertebrae below it in turn.
    ValueError when they would run past S1."""
    first = SPINE_ORDER.index(vertebra_code(top))
    if first + len(world) > len(SPINE_ORDER):
        raise ValueError(f"{len(world)} centroids from {top} down run past S1: name the top one higher")
    labels = [0] * len(world)
    for rank, point in enumerate(np.argsort(-world[:, 2], kind="stable")):
        labels[point] = SPINE_ORDER[first + rank]
    return labels
