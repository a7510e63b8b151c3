"""The picture of a result: a mid-sagittal and a mid-coronal slice of the CT with the contours of
every vertebra's label, superior up, at 0.5 mm per pixel whatever the CT's orientation and spacing."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion, map_coordinates

from invrender.core.overlay import label_colours
from invrender.core.volumes import Volume, world_to_index


def _plane(
    volume: Volume,
    centre: np.ndarray,
    right: np.ndarray,
    up: np.ndarray,
    half_width: float,
    half_height: float,
    step: float,
) -> np.ndarray:
    """Voxel indices (3, H, W) of a plane through `centre` spanned by unit `right` and `up`, one
    sample per `step` mm, top row the highest."""
    across = np.arange(-half_width, half_width + step / 2, step)
    down = np.arange(half_height, -half_height - step / 2, -step)
    points = centre + down[:, None, None] * up + across[None, :, None] * right
    return world_to_index(volume.affine, points.reshape(-1, 3)).T.reshape(3, *points.shape[:2])


def slice_sheet(
    volume: Volume, labels: np.ndarray, centroids: np.ndarray, margin: float = 40.0, step: float = 0.5
) -> np.ndarray:
    """(H, W, 3) uint8: sagittal (anterior left) and coronal (patient's right on the left, as
    radiologists view it) slices through the centroids' mean, intensity windowed to the 1..99th
    percentiles, label contours coloured per label."""
    centre = centroids.mean(axis=0)
    half_height = (np.ptp(centroids[:, 2]) if len(centroids) > 1 else 0.0) / 2 + margin
    # World axes are NIfTI's RAS+: +x towards the patient's right, +y anterior, +z superior.
    superior = np.array([0.0, 0.0, 1.0])
    screen_right = (
        np.array([0.0, -1.0, 0.0]),
        np.array([-1.0, 0.0, 0.0]),
    )  # sagittal: posterior; coronal: patient's left
    panels = []
    for right in screen_right:
        index = _plane(volume, centre, right, superior, 80.0, half_height, step)
        image = map_coordinates(volume.data, index, order=1, mode="constant", cval=float(volume.data.min()))
        label = map_coordinates(labels, index, order=0, mode="constant", cval=0)
        low, high = np.percentile(volume.data, [1, 99])
        grey = (np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        present = [int(v) for v in np.unique(label) if v]
        for value, colour in zip(present, label_colours(present)):
            inside = label == value
            rgb[inside & ~binary_erosion(inside, border_value=1)] = colour  # the label's outermost pixels
        panels.append(rgb)
    gap = np.zeros((panels[0].shape[0], 4, 3), dtype=np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)
