"""The picture of a result: a mid-sagittal and a mid-coronal slice of the CT through the centroids,
with every vertebra's label contour in its colour and its name, and the ground truth's contours
(dotted) when given; superior up, sampled every 0.5 mm whatever the CT's orientation and spacing,
axes in mm from the centroids' mean."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import map_coordinates

from invrender.core.figures import (
    TRUTH,
    Style,
    add_legend,
    draw_curves,
    label_style,
    new_figure,
    show_image,
    write_texts,
)
from invrender.core.geometry.polygons import mask_outlines
from invrender.core.volumes import Volume, vertebra_name, world_to_index

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SLICES_SIZE = (1200, 1000)  # px: the two views side by side

# World axes are NIfTI's RAS+: +x towards the patient's right, +y anterior, +z superior.
SUPERIOR = np.array([0.0, 0.0, 1.0])
#: The views: name, the world direction to the screen's right and what the horizontal axis shows
#: (sagittal: anterior on the left; coronal: the patient's right on the left, as radiologists view it).
VIEWS = (
    ("sagittal", np.array([0.0, -1.0, 0.0]), "towards posterior (mm)"),
    ("coronal", np.array([-1.0, 0.0, 0.0]), "towards the patient's left (mm)"),
)


def _plane(
    volume: Volume, centre: np.ndarray, right: np.ndarray, half_width: float, half_height: float, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plane through `centre` spanned by the unit `right` and SUPERIOR, one sample per `step` mm:
    its voxel indices (3, H, W), top row the highest, and the mm from the centre across (W,) and up (H,)."""
    across = np.arange(-half_width, half_width + step / 2, step)
    up = np.arange(half_height, -half_height - step / 2, -step)
    points = centre + up[:, None, None] * SUPERIOR + across[None, :, None] * right
    return world_to_index(volume.affine, points.reshape(-1, 3)).T.reshape(3, *points.shape[:2]), across, up


def _outlines_mm(mask: np.ndarray, across: np.ndarray, up: np.ndarray) -> list[np.ndarray]:
    """The outlines of a plane's mask (H, W) in the plane's mm (across, up)."""
    step = across[1] - across[0]
    return [np.stack([across[0] + c[:, 0] * step, up[0] - c[:, 1] * step], axis=1) for c in mask_outlines(mask)]


def slice_figure(
    volume: Volume,
    labels: np.ndarray,
    centroids: np.ndarray,
    truth: np.ndarray | None = None,
    title: str = "",
    margin: float = 40.0,
    step: float = 0.5,
) -> Figure:
    """Sagittal and coronal slices through the centroids' mean (N, 3) world mm, as tall as the
    chain plus `margin` mm at each end and 160 mm wide; intensity windowed to the CT's 1..99th
    percentiles; the contours of `labels` (on the CT's grid) per vertebra with its name at its
    centre in the plane, and of `truth` (same grid) dotted; SLICES_SIZE px."""
    centre = centroids.mean(axis=0)
    half_height = (np.ptp(centroids[:, 2]) if len(centroids) > 1 else 0.0) / 2 + margin
    window = tuple(np.percentile(volume.data, [1, 99]))
    figure = new_figure(SLICES_SIZE)
    styles: list[Style] = []
    for ax, (view, right, xlabel) in zip(figure.subplots(1, 2), VIEWS):
        index, across, up = _plane(volume, centre, right, 80.0, half_height, step)
        image = map_coordinates(volume.data, index, order=1, mode="constant", cval=float(volume.data.min()))
        extent = (across[0] - step / 2, across[-1] + step / 2, up[-1] - step / 2, up[0] + step / 2)
        show_image(ax, image, view, extent, window)
        if truth is not None:
            plane = map_coordinates(truth, index, order=0, mode="constant", cval=0)
            for value in np.unique(plane[plane > 0]):
                draw_curves(ax, _outlines_mm(plane == value, across, up), TRUTH)
            styles.append(TRUTH)
        plane = map_coordinates(labels, index, order=0, mode="constant", cval=0)
        for value in (int(v) for v in np.unique(plane[plane > 0])):
            style = label_style(value, vertebra_name(value))
            draw_curves(ax, _outlines_mm(plane == value, across, up), style)
            rows, columns = np.nonzero(plane == value)
            centre_mm = (across[0] + columns.mean() * step, up[0] - rows.mean() * step)
            write_texts(ax, [(centre_mm, style.name, style.colour)])
            styles.append(style)
        ax.set(xlabel=xlabel, ylabel="superior (mm)")
    figure.suptitle(title)
    add_legend(figure, styles)
    return figure
