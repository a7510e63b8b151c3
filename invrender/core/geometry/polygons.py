"""Closed polygons: `(..., K, 2)` tensors or arrays of `[x, y]` vertices in pixels, the edge from the
last vertex back to the first closing them; and the `invrender.polygons` JSON format.

A file holds `{"format": "invrender.polygons", "version": 1, "image": NAME, "polygons": [{"id": 0,
"points": [[x, y], ...]}, ...]}`, the same conventions as the splines format.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from invrender.core.io import write_json

FORMAT = "invrender.polygons"
VERSION = 1


def circle(centre: torch.Tensor, radius: float | torch.Tensor, k: int) -> torch.Tensor:
    """`k` vertices evenly spaced on circles: centre (..., 2) -> (..., k, 2), starting at angle 0
    and turning from +x towards +y."""
    angle = torch.arange(k, dtype=centre.dtype, device=centre.device) * (2 * math.pi / k)
    offsets = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)  # (k, 2)
    radius = torch.as_tensor(radius, dtype=centre.dtype, device=centre.device)
    return centre[..., None, :] + radius[..., None, None] * offsets


def star_polygon(centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Star-convex contours: a centre (..., 2) and R radii (..., R) at evenly spaced angles (the
    first along +x, turning towards +y) -> vertices (..., R, 2) in the centre's units."""
    angle = torch.arange(radii.shape[-1], dtype=radii.dtype, device=radii.device) * (2 * math.pi / radii.shape[-1])
    directions = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)  # (R, 2)
    return centres[..., None, :] + radii[..., None] * directions


def shoelace_area(vertices: torch.Tensor) -> torch.Tensor:
    """Signed area (..., K, 2) -> (...): positive when the vertices turn from +x towards +y."""
    x, y = vertices[..., 0], vertices[..., 1]
    return 0.5 * (x * torch.roll(y, -1, dims=-1) - torch.roll(x, -1, dims=-1) * y).sum(-1)


def second_differences(vertices: torch.Tensor) -> torch.Tensor:
    """p_{j-1} - 2 p_j + p_{j+1} around the polygon: (..., K, 2) -> (..., K, 2)."""
    return torch.roll(vertices, 1, dims=-2) - 2 * vertices + torch.roll(vertices, -1, dims=-2)


def write_polygons(
    path: str | os.PathLike, polygons: list[np.ndarray], image: str, extra: dict[str, Any] | None = None
) -> None:
    """Write polygons `(k, 2)` of one image atomically."""
    data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "image": image, **(extra or {})}
    data["polygons"] = [{"id": i, "points": np.asarray(p, dtype=np.float64).tolist()} for i, p in enumerate(polygons)]
    write_json(path, data)


def mask_outlines(mask: np.ndarray) -> list[np.ndarray]:
    """The outlines of a binary mask `(y, x)` as closed polylines (k, 2) `[x, y]` px (marching
    squares at 1/2; the last point repeats the first)."""
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float64), 1)
    return [c[:, ::-1] - 1 for c in find_contours(padded, 0.5)]
