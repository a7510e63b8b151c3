"""The signed distance from points to a closed triangle mesh, differentiable in the points and the vertices.

For a point p and a closed, consistently oriented triangle mesh, libigl finds the closest point c on
the surface, the face T = (v_0, v_1, v_2) it lies on, and the sign s (+1 outside, -1 inside). Then

    d(p) = s |p - c|,   c = sum_k b_k v_k,

with b the barycentric coordinates of c in T. The distance is a minimum, |p - c| = min over the faces
and over b in the triangle of |p - sum_k b_k v_k|, so its derivative at the minimiser is that of the
objective with the face and b held fixed (the envelope theorem):

    dd/dp   =  g,       g = s (p - c) / |p - c|   (the unit vector along which d grows),
    dd/dv_k = -b_k g    for the three corners of T; zero for every other vertex.

Where the closest feature is an edge or a corner, b lies on that edge (one b_k is 0) or corner (one
b_k is 1) and the same formula holds; whichever of the faces sharing the feature libigl reports, the
gradient is the same. It is exact wherever the closest feature does not change under a small move;
on the medial axis (two features equally close) it is the gradient of one of them. On the surface,
where |p - c| is below ON_SURFACE times the mesh's size, the direction of p - c is rounding noise and
g is the face's outward unit normal instead: the limit of g from either side of a face.

libigl's signed value is used for its sign only: for the winding-number sign types it is
(1 - 2 w) |p - c|, exact only where the winding number w is exactly 0 or 1, and the fast winding number
is evaluated in single precision. The distance itself is |p - c| from libigl's closest point, in float64.

`signed_distances` answers several (points, mesh) queries at once, optionally spread over worker
processes (`DistancePool`): libigl's queries hold Python's lock, so threads would not overlap them.

Shapes and units: points (N, 3) and vertices (V, 3) in the same units (world mm for CT); faces (F, 3)
vertex indices; distances (N,) in those units. `mesh_to_mask` rasterises a mesh onto a voxel grid by
the winding number at the voxel centres.
"""

from __future__ import annotations

import igl
import numpy as np
import torch
from torch.autograd.function import once_differentiable

SIGN_TYPES = {
    "winding_number": igl.SIGNED_DISTANCE_TYPE_WINDING_NUMBER,
    "fast_winding_number": igl.SIGNED_DISTANCE_TYPE_FAST_WINDING_NUMBER,
    "pseudonormal": igl.SIGNED_DISTANCE_TYPE_PSEUDONORMAL,
}
ON_SURFACE = 1e-9  # |p - c| below this times the bounding-box diagonal: on the surface (float64 noise is ~1e-16 of it)


def _numpy(x, dtype) -> np.ndarray:
    """A detached, contiguous CPU copy of a tensor or array, as libigl wants it."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


def _rows(x, name: str):
    """x (an array or a tensor), checked to be (n, 3)."""
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {x.shape}")
    return x


def _barycentric(c: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (N, 3) of the points c (N, 3) in the triangles `corners` (N, 3, 3),
    clamped to the triangle and renormalised: c is on the triangle up to rounding."""
    e1, e2, r = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], c - corners[:, 0]
    d11, d12, d22 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    r1, r2 = (r * e1).sum(1), (r * e2).sum(1)
    det = d11 * d22 - d12**2
    ok = det > 0  # a zero-area face has no barycentrics: share the weight equally rather than divide by 0
    safe = np.where(ok, det, 1.0)
    b1 = np.where(ok, (d22 * r1 - d12 * r2) / safe, 1 / 3)
    b2 = np.where(ok, (d11 * r2 - d12 * r1) / safe, 1 / 3)
    b = np.stack([1 - b1 - b2, b1, b2], axis=1).clip(0, 1)
    return b / b.sum(1, keepdims=True)


def _outward_normals(corners: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals (N, 3) of the triangles `corners` (N, 3, 3), flipped if the mesh is oriented inwards
    (negative enclosed volume), so that they point to increasing signed distance."""
    n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    orientation = 1.0 if np.einsum("ij,ij->", a, np.cross(b, c)) >= 0 else -1.0
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return orientation * n / np.where(length > 0, length, 1.0)


def _query(P: np.ndarray, V: np.ndarray, F: np.ndarray, sign_type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """libigl's answer for points P against the mesh (V, F): signed value S (its sign is used),
    closest face I, closest point C. A module-level function so that worker processes can run it."""
    S, face, C, _ = igl.signed_distance(P, V, F, sign_type)
    return S, face, C


class DistancePool:
    """Worker processes for libigl's queries (`workers` > 1), as a context manager; with one worker
    the queries run here. The workers are started once (spawned: no fork of a threaded parent)."""

    def __init__(self, workers: int = 1):
        self.workers = workers
        self.executor = None

    def __enter__(self) -> DistancePool:
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
            self.executor = None

    def map(self, jobs: list[tuple]) -> list[tuple]:
        if self.executor is None or len(jobs) < 2:
            return [_query(*job) for job in jobs]
        return list(self.executor.map(_query, *zip(*jobs)))


class _SignedDistance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, vertices, faces, query):
        P, V, (S, face, C) = query  # float64 copies of points and vertices, and libigl's answer
        s = np.where(S < 0, -1.0, 1.0)
        r = P - C
        dist = np.linalg.norm(r, axis=1)
        index = faces[face]  # (N, 3) the closest face's vertex indices
        corners = V[index]
        b = _barycentric(C, corners)
        on = dist <= ON_SURFACE * np.linalg.norm(V.max(0) - V.min(0))
        g = s[:, None] * r / np.where(on, 1.0, dist)[:, None]
        if on.any():
            g[on] = _outward_normals(corners[on], V, faces)

        device = points.device
        ctx.save_for_backward(*(torch.from_numpy(x).to(device) for x in (g, b, index)))
        ctx.vertex_meta = (V.shape[0], vertices.dtype, vertices.device)
        ctx.point_dtype = points.dtype
        return torch.from_numpy(s * dist).to(device=device, dtype=points.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_d):
        g, b, index = ctx.saved_tensors
        grad_p = grad_d.to(torch.float64)[:, None] * g  # dL/dp = dL/dd g
        grad_v = None
        if ctx.needs_input_grad[1]:
            count, dtype, device = ctx.vertex_meta
            per_corner = -b[:, :, None] * grad_p[:, None, :]  # (N, 3 corners, 3): dL/dv_k = -b_k dL/dd g
            grad_v = torch.zeros((count, 3), dtype=torch.float64, device=g.device)
            grad_v.index_add_(0, index.reshape(-1), per_corner.reshape(-1, 3))
            grad_v = grad_v.to(device=device, dtype=dtype)
        grad_p = grad_p.to(ctx.point_dtype) if ctx.needs_input_grad[0] else None
        return grad_p, grad_v, None, None


def signed_distance(
    points: torch.Tensor, vertices: torch.Tensor, faces, sign: str = "fast_winding_number"
) -> torch.Tensor:
    """Signed distance (N,) from `points` (N, 3) to the closed mesh (`vertices` (V, 3), `faces` (F, 3)
    int array or LongTensor): positive outside, negative inside. Differentiable in points and vertices;
    the result has the points' dtype and device. `sign`: "fast_winding_number" (robust to small holes,
    fast), "winding_number" (exact) or "pseudonormal" (needs a watertight, manifold mesh that does not
    intersect itself: a deforming mesh that folds gets wrong signs)."""
    return signed_distances([(points, vertices)], faces, sign)[0]


def signed_distances(
    queries: list[tuple[torch.Tensor, torch.Tensor]],
    faces,
    sign: str = "fast_winding_number",
    pool: DistancePool | None = None,
) -> list[torch.Tensor]:
    """`signed_distance` for several (points (N_q, 3), vertices (V, 3)) queries against meshes of
    one connectivity `faces`, the libigl queries run by `pool` (in parallel with several workers)."""
    if sign not in SIGN_TYPES:
        raise ValueError(f"unknown sign {sign!r}: expected one of {', '.join(SIGN_TYPES)}")
    faces = _rows(_numpy(faces, np.int64), "faces")
    for points, vertices in queries:
        _rows(points, "points")
        _rows(vertices, "vertices")
        if faces.size and (faces.min() < 0 or faces.max() >= vertices.shape[0]):  # libigl would read out of bounds
            raise ValueError(f"faces index vertices 0..{vertices.shape[0] - 1}, got {faces.min()}..{faces.max()}")
    jobs = [
        (_numpy(points, np.float64), _numpy(vertices, np.float64), faces, SIGN_TYPES[sign])
        for points, vertices in queries
    ]
    answers = (pool or DistancePool()).map(jobs)
    return [
        _SignedDistance.apply(points, vertices, faces, (job[0], job[1], answer))
        for (points, vertices), job, answer in zip(queries, jobs, answers)
    ]


def winding_inside(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Whether each point (N, 3) is inside the mesh: its fast generalised winding number is above 1/2.
    Bool (N,). Robust to small holes and self-intersections; single precision inside libigl."""
    w = igl.fast_winding_number(_numpy(vertices, np.float64), _numpy(faces, np.int64), _numpy(points, np.float64))
    return w > 0.5


def mesh_to_mask(
    vertices: np.ndarray, faces: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int]
) -> np.ndarray:
    """The voxels (bool, `shape`) whose centres are inside the mesh. `vertices` (V, 3) in world units,
    `affine` (4, 4) maps voxel indices (i, j, k) to world. Only the voxels in the mesh's bounding box
    (in index space) are tested, so the cost follows the mesh's size rather than the volume's."""
    mask = np.zeros(shape, dtype=bool)
    vertices = np.asarray(vertices, dtype=np.float64)
    inverse = np.linalg.inv(affine)
    index = vertices @ inverse[:3, :3].T + inverse[:3, 3]
    lo = np.maximum(np.floor(index.min(0)), 0).astype(np.int64)
    hi = np.minimum(np.ceil(index.max(0)), np.asarray(shape) - 1).astype(np.int64)
    if np.any(lo > hi):  # the mesh misses the grid
        return mask
    axes = [np.arange(a, b + 1) for a, b in zip(lo, hi)]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    world = ijk @ np.asarray(affine, dtype=np.float64)[:3, :3].T + affine[:3, 3]
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
    mask[box] = winding_inside(world, vertices, faces).reshape(hi - lo + 1)
    return mask
