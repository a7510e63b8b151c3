"""The exact Fourier transform of a triangle mesh's surface measure, with its analytic vertex gradient.

For a triangle T with vertices v1, v2, v3 and area A,

    u_T(xi) = integral over T of exp(-i xi . x) dS(x) = 2 A E(t1, t2, t3),   t_p = xi . v_p,

where E is the second divided difference of exp at z_p = -i t_p: the integral of exp(sum lambda_p z_p)
over the unit simplex of barycentric coordinates (area 1/2). This is Eqs. 7-8 of Ichbiah et al.
(their f_T), written in a form whose degenerate cases (two or three equal t_p, Eqs. 11-12) are the
same function: E is symmetric, so the t_p are sorted, and wherever a gap between them is below TAU
the divided differences are taken from their power series instead of a quotient of differences.

The gradient (Eqs. 6, 9, 10) follows from the same parameterisation: with x = sum lambda_p v_p,

    d u_T / d v_p = 2 (dA / d v_p) E  +  2 A (-i xi) G_p,   G_p = dE / dz_p = E(t1, t2, t3, t_p),

the third divided difference with t_p repeated (the first moment of lambda_p over the simplex).

`mesh_ft(vertices, faces, face_weights, freqs)` returns S(xi) = sum_T w_T u_T(xi) for a set of
frequencies (rad per unit length), in float64, as a torch autograd Function whose backward works
in chunks of frequencies, so memory stays bounded; the normalisation by the area and the
multiplication by the PSF's transfer function are ordinary torch operations around it.
"""

from __future__ import annotations

import math

import torch

TAU = 1e-2  # below this gap (radians) a divided difference is taken from its power series
SERIES_TERMS = 6  # terms of the series: the first omitted is below 1e-12 * TAU**6
CHUNK_PAIRS = (
    1 << 17
)  # (face, frequency) pairs per chunk: bounds memory; small enough to stay in cache (2x faster than 1 << 21)


def _series(points: list[torch.Tensor], order: int) -> torch.Tensor:
    """The divided difference of exp at 0 and `points` (complex, small): sum_j h_j(points) / (j + order)!,
    h_j the complete homogeneous symmetric polynomials (h_j of one point x is x**j)."""
    h = [torch.ones_like(points[0])]
    for _ in range(1, SERIES_TERMS):
        h.append(h[-1] * points[0])
    for x in points[1:]:
        for j in range(1, SERIES_TERMS):
            h[j] = h[j] + x * h[j - 1]
    return sum(h[j] / math.factorial(j + order) for j in range(SERIES_TERMS))


def _quotient(
    high: torch.Tensor, low: torch.Tensor, inv_gap: torch.Tensor, small: torch.Tensor, series
) -> torch.Tensor:
    """(low - high) / (z_low - z_high) with z = -i t and 1 / gap = 1 / (t_high - t_low), where the gap
    is at least TAU; `series(small)` on the indices `small` (where it is not). Flat tensors."""
    d = low - high
    out = torch.complex(d.imag * inv_gap, -d.real * inv_gap)  # d / (i gap), in real arithmetic (faster)
    if small.numel():
        out[small] = series(small)
    return out


class _Sorted:
    """The projections t = xi . v of a chunk's (face, frequency) pairs, sorted (a <= b <= c), their
    exponentials and first and second divided differences: what forward and backward both need.
    Kept flat (one entry per pair); the indices where a gap is below TAU are found once."""

    def __init__(self, t: torch.Tensor):
        self.shape = t.shape[:-1]
        t = t.reshape(-1, 3)
        self.a, self.c = t.min(dim=-1).values, t.max(dim=-1).values
        self.b = t.sum(dim=-1) - self.a - self.c
        self.ea, self.eb, self.ec = (torch.complex(torch.cos(x), -torch.sin(x)) for x in (self.a, self.b, self.c))
        self.gap_ab, self.gap_bc, self.gap_ac = self.b - self.a, self.c - self.b, self.c - self.a
        self.inv_ab, self.inv_bc, self.inv_ac = (
            1.0 / g.clamp_min(TAU) for g in (self.gap_ab, self.gap_bc, self.gap_ac)
        )
        self.small_ab, self.small_bc, self.small_ac = (
            torch.nonzero(g < TAU).squeeze(1) for g in (self.gap_ab, self.gap_bc, self.gap_ac)
        )
        z = self.z
        self.d1_ab = _quotient(
            self.eb, self.ea, self.inv_ab, self.small_ab, lambda m: self.ea[m] * _series([z(self.gap_ab, m)], 1)
        )
        self.d1_bc = _quotient(
            self.ec, self.eb, self.inv_bc, self.small_bc, lambda m: self.eb[m] * _series([z(self.gap_bc, m)], 1)
        )
        self.d2_abc = _quotient(
            self.d1_bc,
            self.d1_ab,
            self.inv_ac,
            self.small_ac,
            lambda m: self.ea[m] * _series([z(self.gap_ab, m), z(self.gap_ac, m)], 2),
        )

    @staticmethod
    def z(gap: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """z_high - z_low = -i gap at the given indices."""
        return -1j * gap[index]

    def first_moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """E(a,a,b,c), E(a,b,b,c), E(a,b,c,c): the moment G_p of the vertex of rank 0, 1, 2."""
        s, z = self, self.z
        d2_aab = _quotient(s.d1_ab, s.ea, s.inv_ab, s.small_ab, lambda m: s.ea[m] * _series([z(s.gap_ab, m)], 2))
        d2_abb = _quotient(
            s.eb, s.d1_ab, s.inv_ab, s.small_ab, lambda m: s.ea[m] * _series([z(s.gap_ab, m), z(s.gap_ab, m)], 2)
        )
        d2_bbc = _quotient(s.d1_bc, s.eb, s.inv_bc, s.small_bc, lambda m: s.eb[m] * _series([z(s.gap_bc, m)], 2))
        d2_bcc = _quotient(
            s.ec, s.d1_bc, s.inv_bc, s.small_bc, lambda m: s.eb[m] * _series([z(s.gap_bc, m), z(s.gap_bc, m)], 2)
        )
        ab, ac = (lambda m: z(s.gap_ab, m)), (lambda m: z(s.gap_ac, m))
        g0 = _quotient(s.d2_abc, d2_aab, s.inv_ac, s.small_ac, lambda m: s.ea[m] * _series([ab(m), ac(m)], 3))
        g1 = _quotient(d2_bbc, d2_abb, s.inv_ac, s.small_ac, lambda m: s.ea[m] * _series([ab(m), ab(m), ac(m)], 3))
        g2 = _quotient(d2_bcc, s.d2_abc, s.inv_ac, s.small_ac, lambda m: s.ea[m] * _series([ab(m), ac(m), ac(m)], 3))
        return tuple(g.reshape(self.shape) for g in (g0, g1, g2))

    @property
    def second_difference(self) -> torch.Tensor:
        """E(a, b, c), shaped like the pairs."""
        return self.d2_abc.reshape(self.shape)


def _ranks(t: torch.Tensor) -> torch.Tensor:
    """The rank (0, 1, 2) of each vertex's projection within its triangle; ties broken by vertex order,
    so that the ranks are a permutation and rank r holds the r-th smallest value."""
    t0, t1, t2 = t[..., 0], t[..., 1], t[..., 2]
    r0 = (t1 < t0).long() + (t2 < t0).long()
    r1 = (t0 <= t1).long() + (t2 < t1).long()
    r2 = (t0 <= t2).long() + (t1 <= t2).long()
    return torch.stack([r0, r1, r2], dim=-1)


def triangle_areas(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F,) areas of the faces (F, 3) of vertices (V, 3)."""
    v0, v1, v2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return 0.5 * torch.linalg.cross(v1 - v0, v2 - v0).norm(dim=-1)


def _chunks(n_faces: int, n_freqs: int) -> list[slice]:
    size = max(1, CHUNK_PAIRS // max(1, n_faces))
    return [slice(k, min(k + size, n_freqs)) for k in range(0, n_freqs, size)]


class _MeshFT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vertices, faces, face_weights, freqs):
        corners = vertices[faces]  # (F, 3 corners, 3 coords)
        scale = 2.0 * face_weights * triangle_areas(vertices, faces)  # (F,)
        out = torch.empty(freqs.shape[0], dtype=torch.complex128, device=vertices.device)
        for chunk in _chunks(faces.shape[0], freqs.shape[0]):
            t = torch.einsum("fpd,kd->fkp", corners, freqs[chunk])  # (F, K, 3)
            out[chunk] = scale.to(torch.complex128) @ _Sorted(t).second_difference
        ctx.save_for_backward(vertices, faces, face_weights, freqs)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        vertices, faces, face_weights, freqs = ctx.saved_tensors
        corners = vertices[faces]
        areas = triangle_areas(vertices, faces)
        real_part = torch.zeros(
            faces.shape[0], dtype=torch.float64, device=vertices.device
        )  # sum Re(conj(g) E) per face
        moments = torch.zeros(
            faces.shape[0], 3, 3, dtype=torch.float64, device=vertices.device
        )  # sum Im(conj(g) G_p) xi
        for chunk in _chunks(faces.shape[0], freqs.shape[0]):
            t = torch.einsum("fpd,kd->fkp", corners, freqs[chunk])
            g = grad_out[chunk].conj()
            sorted_ = _Sorted(t)
            real_part += (sorted_.second_difference @ g).real
            by_rank = torch.stack(sorted_.first_moments(), dim=-1)  # (F, K, rank)
            per_vertex = torch.gather(by_rank, -1, _ranks(t))  # (F, K, p): G_p
            moments += torch.einsum("fkp,kd->fpd", (per_vertex * g[None, :, None]).imag, freqs[chunk])
        grad = torch.zeros_like(vertices)
        grad.index_add_(0, faces.reshape(-1), (2.0 * (face_weights * areas)[:, None, None] * moments).reshape(-1, 3))
        with torch.enable_grad():  # the area term: 2 (dA/dv) E, through the area's own (cheap) autograd
            v = vertices.detach().requires_grad_(True)
            grad += torch.autograd.grad(triangle_areas(v, faces), v, 2.0 * face_weights * real_part)[0]
        return grad, None, None, None


def mesh_ft(
    vertices: torch.Tensor, faces: torch.Tensor, face_weights: torch.Tensor, freqs: torch.Tensor
) -> torch.Tensor:
    """S(xi) = sum over faces of w_T * integral_T exp(-i xi . x) dS(x), complex128 of shape (K,).

    vertices (V, 3) float64 (differentiable), faces (F, 3) long, face_weights (F,) float64 (e.g. 2 on
    a cell-cell interface), freqs (K, 3) float64 in radians per unit of the vertex coordinates.
    """
    return _MeshFT.apply(vertices, faces, face_weights, freqs)
