"""Cross-sections of a triangle mesh by an axis-aligned plane, for drawing a mesh on a slice of its
stack."""

from __future__ import annotations

import numpy as np

#: The two ends of each edge of a triangle (vertex slots 0, 1, 2).
_EDGES = np.array([[0, 1], [1, 2], [2, 0]])


def plane_section(vertices: np.ndarray, faces: np.ndarray, axis: int, position: float) -> np.ndarray:
    """The segments (S, 2, 3) where the plane `vertices[:, axis] == position` cuts the triangles,
    at most one per triangle, in the vertices' units (x, y, z for our meshes).

    A vertex on the plane counts as above it (the plane moved down by an infinitesimal): a triangle
    is cut when its vertices lie on both sides, an edge in the plane is cut once, and the cuts of
    zero length (a triangle below the plane touching it at a vertex) are left out, so that the
    segments of a closed mesh join into closed curves, each end shared by two segments."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    height = vertices[faces, axis] - position  # (F, 3) signed distance of each corner
    below = height < 0
    cut = below.any(axis=1) & ~below.all(axis=1)
    corners, height, below = vertices[faces[cut]], height[cut], below[cut]  # (S, 3, 3), (S, 3), (S, 3)
    start, end = _EDGES[:, 0], _EDGES[:, 1]
    crossing = below[:, start] != below[:, end]  # (S, 3): exactly two edges of a cut triangle cross
    t = height[:, start] / np.where(crossing, height[:, start] - height[:, end], 1.0)  # never 0 where crossing
    points = corners[:, start] + t[..., None] * (corners[:, end] - corners[:, start])  # (S, 3 edges, 3)
    order = np.argsort(~crossing, axis=1, kind="stable")[:, :2]  # the two crossing edges, in edge order
    segments = np.take_along_axis(points, order[..., None], axis=1)
    segments[..., axis] = position  # exactly on the plane (the interpolation is within rounding of it)
    return segments[np.any(segments[:, 0] != segments[:, 1], axis=1)]
