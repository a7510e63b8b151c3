"""The plugin's writers (napari.yaml), napari's single-layer writer commands
`(path, data, attributes) -> [written paths]`.

- Shapes (paths) -> `invrender.splines` JSON, for `invrender spline-refine --init`
- Labels -> 16-bit TIFF (3D with the layer's scale as voxel size)
"""

from __future__ import annotations

from typing import Any

from invrender.core.geometry.spline_io import write_splines
from invrender.napari.images import write_labels_tiff
from invrender.napari.shapes import splines_from_shapes


def write_splines_layer(path: str, data: list, attributes: dict[str, Any]) -> list[str]:
    frames, image = splines_from_shapes(data, attributes)
    write_splines(path, frames, image=image)
    return [path]


def write_labels_layer(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    write_labels_tiff(path, data, attributes)
    return [path]
