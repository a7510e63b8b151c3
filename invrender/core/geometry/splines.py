"""Natural cubic splines on uniform knots, as linear maps, in torch.

A natural cubic spline through K values `y_k` at uniform parameters `s_k = k / (K - 1)` is linear in
the values: evaluating it at parameters `s` is a matrix product `B(s) @ y` with the basis matrix
`B(s)` of shape `(n, K)`. We build `B` from the classical second-derivative form

    y(s) = (1-t) y_j + t y_{j+1} + h^2/6 [((1-t)^3 - (1-t)) M_j + (t^3 - t) M_{j+1}],

where `h = 1/(K-1)`, `s = s_j + t h`, and the second derivatives `M = G y` solve the tridiagonal
system `M_{j-1} + 4 M_j + M_{j+1} = 6/h^2 (y_{j+1} - 2 y_j + y_{j-1})` with `M_0 = M_{K-1} = 0`.
`G` depends on K only, so everything reduces to small dense matrices that broadcast over any
leading batch axes (seeds, splines, channels).
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=64)
def _second_derivative_operator(n_knots: int) -> torch.Tensor:
    """`G` of shape (K, K), float64: second derivatives at the knots = G @ values."""
    K = n_knots
    G = torch.zeros(K, K, dtype=torch.float64)
    if K < 3:
        return G  # a natural spline through 2 points is the straight line
    h = 1.0 / (K - 1)
    inner = K - 2
    A = 4.0 * torch.eye(inner, dtype=torch.float64)
    A += torch.diag(torch.ones(inner - 1, dtype=torch.float64), 1) + torch.diag(
        torch.ones(inner - 1, dtype=torch.float64), -1
    )
    D = torch.zeros(inner, K, dtype=torch.float64)
    idx = torch.arange(inner)
    D[idx, idx], D[idx, idx + 1], D[idx, idx + 2] = 1.0, -2.0, 1.0
    G[1:-1] = torch.linalg.solve(A, D * (6.0 / h**2))
    return G


def _segment_index(u: torch.Tensor, last: int) -> torch.Tensor:
    """The segment (0 to `last`) of each scaled parameter `u` in [0, last + 1] (or NaN), as long.

    A NaN parameter (a curve whose knots diverged) goes to segment 0, so that it evaluates to NaN,
    which the loss reports, instead of an out-of-range index (NaN cast to an integer)."""
    return torch.nan_to_num(u.detach(), nan=0.0).floor().clamp(0, last).long()


def natural_spline_basis(s: torch.Tensor, n_knots: int, derivative: int = 0) -> torch.Tensor:
    """Basis matrix of the natural cubic spline (or its 1st/2nd derivative) at parameters `s`.

    s: (..., n) parameters in [0, 1] (clamped). Returns (..., n, K) in the dtype of `s`, such that
    `basis @ values` with values (..., K, C) evaluates the spline. Derivatives are with respect
    to s.
    """
    K = n_knots
    h = 1.0 / (K - 1)
    G = _second_derivative_operator(K).to(device=s.device, dtype=s.dtype)
    u = s.clamp(0.0, 1.0) * (K - 1)
    j = _segment_index(u, K - 2)
    t = (u - j).unsqueeze(-1)
    eye = torch.eye(K, dtype=s.dtype, device=s.device)
    e0, e1 = eye[j], eye[j + 1]
    g0, g1 = G[j], G[j + 1]
    if derivative == 0:
        return (1 - t) * e0 + t * e1 + h**2 / 6 * (((1 - t) ** 3 - (1 - t)) * g0 + (t**3 - t) * g1)
    if derivative == 1:
        return (e1 - e0) / h + h / 6 * ((1 - 3 * (1 - t) ** 2) * g0 + (3 * t**2 - 1) * g1)
    if derivative == 2:
        return (1 - t) * g0 + t * g1
    raise ValueError("derivative must be 0, 1 or 2")


def evaluate(values: torch.Tensor, s: torch.Tensor, derivative: int = 0) -> torch.Tensor:
    """Evaluate natural splines through `values` (..., K, C) at `s` (n,) or (..., n): (..., n, C)."""
    return natural_spline_basis(s, values.shape[-2], derivative) @ values


def arc_length_parameters(knots: torch.Tensor, n_points: int, n_fine: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameters `s` at which the curve through `knots` is sampled uniformly in arc length.

    knots: (..., K, 2) positions. Returns `s` (..., n_points), detached (the arc-length
    reparametrisation only places samples; gradients flow through the evaluation at `s`), and the
    curve length (...,), differentiable, by the trapezoidal rule on `n_fine` samples.
    """
    s_fine = torch.linspace(0.0, 1.0, n_fine, dtype=knots.dtype, device=knots.device)
    speed = evaluate(knots, s_fine, derivative=1).norm(dim=-1)  # (..., n_fine)
    segment = 0.5 * (speed[..., 1:] + speed[..., :-1]) / (n_fine - 1)
    cumulative = torch.cat([torch.zeros_like(segment[..., :1]), segment.cumsum(-1)], dim=-1)
    length = cumulative[..., -1]
    targets = torch.linspace(0.0, 1.0, n_points, dtype=knots.dtype, device=knots.device) * length.detach().unsqueeze(-1)
    s = _interp(targets, cumulative.detach(), s_fine)
    return s, length


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Batched `np.interp`: x (..., n), xp (..., m) increasing, fp (m,). Returns (..., n)."""
    i = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.shape[-1] - 1)
    x0, x1 = xp.gather(-1, i - 1), xp.gather(-1, i)
    w = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return fp[i - 1] + w * (fp[i] - fp[i - 1])


def bending_energy(knots: torch.Tensor, n_fine: int = 128) -> torch.Tensor:
    """Mean of |r''(s)| over s, times the parameter step: a smoothness penalty per curve.

    knots: (..., K, 2). Returns (...,). The small epsilon keeps the gradient finite on straight
    curves, where |r''| = 0.
    """
    s = torch.linspace(0.0, 1.0, n_fine, dtype=knots.dtype, device=knots.device)
    second = evaluate(knots, s, derivative=2)
    return torch.sqrt((second**2).sum(-1) + 1e-6).mean(-1) / (n_fine - 1)


def knot_gaps(knots: torch.Tensor) -> torch.Tensor:
    """Distances between consecutive knots, (..., K-1), from knots (..., K, C).

    The knots sit at uniform parameters, so a curve sampled evenly in arc length has equal gaps;
    sliding knots along the curve leaves its shape almost unchanged (a near null space of the
    parametrisation) but makes the gaps uneven, which a regulariser on them can penalise.
    """
    return (knots[..., 1:, :] - knots[..., :-1, :]).norm(dim=-1)


def fit_knots(points: torch.Tensor, n_knots: int) -> torch.Tensor:
    """Knot values whose natural spline best fits a polyline (least squares, arc-length parameters).

    points: (n, C) with n >= 2. Returns (n_knots, C). Used to turn any init polyline (a detector's
    output, a straight line) into the K knots of the model.
    """
    step = (points[1:] - points[:-1]).norm(dim=-1)
    cumulative = torch.cat([points.new_zeros(1), step.cumsum(0)])
    total = cumulative[-1].clamp_min(1e-12)
    s = cumulative / total
    if len(points) < n_knots:  # densify so the least-squares problem is well posed
        dense = torch.linspace(0.0, 1.0, 4 * n_knots, dtype=points.dtype, device=points.device)
        points = torch.stack([_interp(dense, s, points[:, c]) for c in range(points.shape[1])], dim=-1)
        s = dense
    basis = natural_spline_basis(s, n_knots)
    return torch.linalg.lstsq(basis, points).solution


def segment_coefficients(values: torch.Tensor) -> torch.Tensor:
    """Cubic coefficients `(a, b, c, d)` of each segment of the natural spline through `values`.

    values: (..., K). Returns (..., K-1, 4) with y = a + b t + c t^2 + d t^3 on segment j, t in [0, 1].
    Cheaper than the basis matrix when one spline is evaluated at very many parameters.
    """
    K = values.shape[-1]
    h2 = 1.0 / (K - 1) ** 2
    M = values @ _second_derivative_operator(K).to(values).T
    y0, y1, m0, m1 = values[..., :-1], values[..., 1:], M[..., :-1], M[..., 1:]
    return torch.stack([y0, y1 - y0 - h2 / 6 * (2 * m0 + m1), h2 / 2 * m0, h2 / 6 * (m1 - m0)], dim=-1)


def evaluate_segments(coefficients: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Evaluate splines given by `segment_coefficients` at parameters `s`.

    coefficients: (*batch, K-1, 4); s: (*batch, ...) in [0, 1] (clamped), one spline per batch
    entry. Returns the shape of `s`.
    """
    batch, n_segments = coefficients.shape[:-2], coefficients.shape[-2]
    u = s.clamp(0.0, 1.0) * n_segments
    j = _segment_index(u, n_segments - 1)
    t = u - j
    offset = torch.arange(batch.numel(), device=s.device).reshape(*batch, *([1] * (s.ndim - len(batch))))
    a, b, c, d = coefficients.reshape(-1, 4)[j + offset * n_segments].unbind(-1)
    return a + t * (b + t * (c + t * d))
