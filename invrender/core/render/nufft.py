"""A mesh's surface measure transformed by quadrature and a non-uniform FFT (finufft).

Each triangle carries quadrature points with weights (area x rule weight x face weight), so

    S(xi) = sum_j W_j exp(-i xi . x_j)

is a type-1 NUFFT from the points to the modes of the band's box; its cost grows like the box's
modes (times log) plus the number of points, not their product as for the exact transform. The
backward pass is the adjoint (type 2, opposite sign) of g, and of g xi_x, g xi_y, g xi_z for the
gradients with respect to the points; the weights' dependence on the vertices (areas) is ordinary
torch autograd around it.

Quadrature: symmetric rules on the triangle of degree 1 (centroid), 2 (3 points) and 5 (Radon's 7
points), optionally on each of the n^2 sub-triangles of a regular subdivision. Degree 5 is exact for
polynomials of degree 5; its error against `meshft` is measured in bench/ and tests/.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from invrender.core.render.meshft import triangle_areas
from invrender.core.render.spectrum import Band

# finufft's requested relative precision. Its spreading kernel grows with the digits asked for: on
# spot at 64^3 (5120 faces) 1e-6 is 2.6x faster than 1e-10 on the shape steps and 2.2x on the full
# spectrum, with image errors of 4e-9 and gradients whose cosine to 1e-10's is 1 - 1e-16, far below
# the quadrature's own error (bench/README.md, mesh-fit renderers).
NUFFT_TOLERANCE = 1e-6

# finufft spreads every point onto a fine grid `upsampfac` times the box and FFTs that grid. Left to
# itself (upsampfac 0) it chose 1.25 for the shape steps' boxes, where the point spreading dominates
# and 2.0's narrower kernel is 1.5-3x faster. Measured on 2 cores (36 000 to 290 000 points on
# spheres, bench/README.md "finufft's upsampling"): 2.0 is faster for boxes up to 45^3 modes, 1.25
# from 65^3 up, where the fine grid's FFT dominates.
FINE_UPSAMPLING_MODES = 150_000


def _upsampling(box: tuple[int, int, int]) -> float:
    """finufft's upsampling factor for a box of (2 m + 1)^3 modes."""
    return 2.0 if math.prod(2 * m + 1 for m in box) < FINE_UPSAMPLING_MODES else 1.25


def _rule(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric points (Q, 3) and weights (Q,) summing to 1, of a symmetric triangle rule."""
    if degree == 1:
        return np.full((1, 3), 1 / 3), np.ones(1)
    if degree == 2:
        return np.array([[2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]]), np.full(3, 1 / 3)
    if degree == 5:  # Radon (1948): the centroid and two orbits of three points
        r = math.sqrt(15)
        points, weights = [[1 / 3, 1 / 3, 1 / 3]], [9 / 40]
        for a, w in (((6 - r) / 21, (155 - r) / 1200), ((6 + r) / 21, (155 + r) / 1200)):
            b = 1 - 2 * a
            points += [[b, a, a], [a, b, a], [a, a, b]]
            weights += [w] * 3
        return np.array(points), np.array(weights)
    raise ValueError(f"quadrature degree {degree}: expected 1, 2 or 5")


def quadrature_rule(degree: int, subdivisions: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The rule of `degree` applied on each of the subdivisions^2 sub-triangles: barycentric points
    (Q, 3) and weights (Q,) summing to 1, float64."""
    points, weights = _rule(degree)
    n = subdivisions
    corners = []  # barycentric corners of every sub-triangle
    for i in range(n):
        for j in range(n - i):
            a, b, c = (
                np.array([i, j, n - i - j]),
                np.array([i + 1, j, n - i - j - 1]),
                np.array([i, j + 1, n - i - j - 1]),
            )
            corners.append(np.stack([a, b, c]) / n)
            if i + j < n - 1:  # the upside-down neighbour
                d = np.array([i + 1, j + 1, n - i - j - 2])
                corners.append(np.stack([b, d, c]) / n)
    corners = np.stack(corners)  # (n^2, 3 corners, 3 barycentric)
    all_points = np.einsum("qc,scb->sqb", points, corners).reshape(-1, 3)
    all_weights = np.tile(weights / n**2, len(corners))
    return torch.tensor(all_points), torch.tensor(all_weights)


def quadrature_points(
    vertices: torch.Tensor, faces: torch.Tensor, face_weights: torch.Tensor, degree: int, subdivisions: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (F * Q, 3) and weights (F * Q,) of every face's rule, differentiable in the vertices."""
    bary, rule_weights = quadrature_rule(degree, subdivisions)
    bary, rule_weights = bary.to(vertices), rule_weights.to(vertices)
    points = torch.einsum("qc,fcd->fqd", bary, vertices[faces])
    weights = (face_weights * triangle_areas(vertices, faces))[:, None] * rule_weights[None, :]
    return points.reshape(-1, 3), weights.reshape(-1)


class _NonUniformFT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, weights, band: Band):
        import finufft

        angles, box = _angles(points, band), band.max_modes
        strengths = weights.detach().cpu().numpy().astype(np.complex128)
        modes = finufft.nufft3d1(
            *angles,
            strengths,
            n_modes=tuple(2 * m + 1 for m in box),
            isign=-1,
            eps=NUFFT_TOLERANCE,
            upsampfac=_upsampling(box),
            nthreads=torch.get_num_threads(),
        )
        ctx.save_for_backward(points, weights)
        ctx.band = band
        return torch.from_numpy(modes[_box_index(band)]).to(points.device)

    @staticmethod
    def backward(ctx, grad_out):
        import finufft

        points, weights = ctx.saved_tensors
        band = ctx.band
        box = band.max_modes
        g = grad_out.detach().cpu().numpy()
        fields = np.zeros((4, *(2 * m + 1 for m in box)), dtype=np.complex128)
        freqs = band.freqs.numpy()
        for n, factor in enumerate([np.ones(len(g)), freqs[:, 0], freqs[:, 1], freqs[:, 2]]):
            fields[n][_box_index(band)] = g * factor
        values = finufft.nufft3d2(  # (4, P)
            *_angles(points, band),
            fields,
            isign=1,
            eps=NUFFT_TOLERANCE,
            upsampfac=_upsampling(box),
            nthreads=torch.get_num_threads(),
        )
        grad_weights = torch.from_numpy(values[0].real).to(weights)
        grad_points = -weights.detach()[:, None] * torch.from_numpy(values[1:].imag.T.copy()).to(points)
        return grad_points, grad_weights, None


def _angles(points: torch.Tensor, band: Band) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point coordinates as phases theta_d = 2 pi x_d / (n_d spacing_d): then xi . x = m . theta."""
    (nz, ny, nx), (dz, dy, dx) = band.grid.shape, band.grid.spacing
    p = points.detach().cpu().numpy()
    return tuple(
        np.ascontiguousarray(2 * math.pi * p[:, d] / length) for d, length in enumerate((nx * dx, ny * dy, nz * dz))
    )


def _box_index(band: Band) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each band entry sits in the (2M+1)^3 box of modes that finufft returns (x, y, z order)."""
    box = band.max_modes
    modes = band.modes.numpy()
    return tuple(modes[:, d] + box[d] for d in range(3))


def nufft_mesh_ft(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    face_weights: torch.Tensor,
    band: Band,
    degree: int = 5,
    subdivisions: int = 1,
    max_phase: float | None = None,
    accurate_up_to: float | None = None,
) -> torch.Tensor:
    """S on the band (K,) complex128, as `meshft.mesh_ft` but by quadrature and a NUFFT.

    The rule's error grows with the phase a triangle spans at the highest frequency that matters
    (`accurate_up_to`, rad per unit; default the band's highest, but a caller that multiplies S by
    a PSF's transfer function may pass where that becomes negligible); with `max_phase` (radians),
    triangles are subdivided (at least `subdivisions` times) until their longest edge spans at most
    that much, each triangle by its own edges.
    """
    per_face = torch.full((len(faces),), subdivisions, dtype=torch.long)
    if max_phase is not None:  # each triangle as finely as its own longest edge needs
        corners = vertices.detach()[faces]
        longest = (corners - corners.roll(1, dims=1)).norm(dim=-1).amax(dim=1)
        highest = accurate_up_to if accurate_up_to is not None else band.freqs.norm(dim=-1).max().item()
        per_face = torch.clamp(torch.ceil(longest * highest / max_phase).long(), min=subdivisions)
    groups = [
        quadrature_points(vertices, faces[per_face == n], face_weights[per_face == n], degree, int(n))
        for n in per_face.unique()
    ]
    points, weights = torch.cat([g[0] for g in groups]), torch.cat([g[1] for g in groups])
    return _NonUniformFT.apply(points, weights, band)
