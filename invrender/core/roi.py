"""ImageJ ROI sets: 2D outlines as a `.zip` that Fiji's ROI Manager opens over the image.

Our points are `[x, y]` in pixels with the centre of the top-left pixel at `[0, 0]`. ImageJ places
an area ROI's (polygon's) integer coordinates on pixel corners, so the centre of pixel (0, 0) is
(0.5, 0.5) there, and a line ROI's (polyline's) on pixel centres (ImageJ's `Roi` class
documentation, "Convention for subpixel resolution"). Polygons are therefore written shifted by
+0.5 pixel and polylines as they are, both with sub-pixel (float32) coordinates. An outline of a
time-lapse carries its frame (0-based here) as ImageJ's 1-based stack position and hyperstack
frame, which agree for the single-channel `TYX` TIFFs invrender writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from invrender.core.io import atomic_path

#: Where our pixel centres lie in ImageJ's coordinates, per kind of outline.
IMAGEJ_OFFSET = {"polygon": 0.5, "polyline": 0.0}


class Outline(NamedTuple):
    """One ROI: `points` (k, 2) `[x, y]` in pixels (our convention), its `name` in the ROI Manager
    and, in a time-lapse, its `frame` (0-based; None for a single image)."""

    points: np.ndarray
    name: str
    frame: int | None = None


def write_roi_zip(path: str | os.PathLike, outlines: Iterable[Outline], kind: str) -> None:
    """Write `outlines` as ImageJ ROIs of `kind` "polygon" (closed, area ROIs) or "polyline" (open,
    line ROIs) into a `.zip` atomically. Zip entries are numbered in order, so equal names (a cell's
    label in every frame) stay distinct files."""
    import roifile

    if kind not in IMAGEJ_OFFSET:
        raise ValueError(f"ROI kind {kind!r}: expected one of {', '.join(IMAGEJ_OFFSET)}")
    roi_type = roifile.ROI_TYPE.POLYGON if kind == "polygon" else roifile.ROI_TYPE.POLYLINE
    rois, entries = [], []
    for index, outline in enumerate(outlines):
        points = np.asarray(outline.points, dtype=np.float64) + IMAGEJ_OFFSET[kind]
        frame = outline.frame
        roi = roifile.ImagejRoi.frompoints(points, name=outline.name, position=frame, t=frame)
        roi.roitype = roi_type
        rois.append(roi)
        entries.append(f"{index + 1:04d}-{outline.name}")
    with atomic_path(path) as tmp:
        roifile.roiwrite(tmp, rois, name=entries, mode="w")
