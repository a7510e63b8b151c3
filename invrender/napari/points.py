"""VerSe centroid files as a napari Points layer over their CT.

A VerSe `*_ctd.json` gives each vertebra's centroid in voxel coordinates of its CT, reoriented to
the axis codes its first entry names, so it is read with the CT's NIfTI beside it. The points go
onto the CT's grid as the plugin opens the CT (`images.grid_attributes`: voxel index times
spacing), each named by its vertebra in a `label` feature, which the Segment a spine widget reads.
"""

from __future__ import annotations

import numpy as np

from invrender.core.volumes import VERTEBRA_NAMES
from invrender.napari import LayerData
from invrender.napari.images import GRID_UNITS, world_to_grid_layer

#: Size of a centroid's marker, in the CT layer's units (mm).
CENTROID_SIZE = 6.0


def centroids_layer(centroids: dict[int, np.ndarray], affine: np.ndarray, name: str) -> LayerData:
    """Points layer data of vertebra centroids `{VerSe label: (3,) world mm}` over the CT with
    voxel-to-world `affine`, labelled with the vertebrae's names."""
    labels = sorted(centroids)
    world = np.array([centroids[label] for label in labels], dtype=np.float64).reshape(-1, 3)
    names = [VERTEBRA_NAMES[label] for label in labels]
    attributes = {
        "name": name,
        "features": {"label": names},
        "text": {"string": "{label}", "color": "yellow", "anchor": "upper_left"},
        "size": CENTROID_SIZE,
        "face_color": "yellow",
        "units": GRID_UNITS,
    }
    return world_to_grid_layer(affine, world), attributes, "points"
