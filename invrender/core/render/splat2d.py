"""Splatting radial blobs along curves into 2D images (the Splender renderer), in torch.

Every sample point `c` of a curve, with radius `r` and weight `w`, adds to pixel `p` the value

    w * f(z) * taper(d / (cut r)),   z = exp(-d / r),   d = |p - c|,

where `f` is a learned 1D natural cubic spline on [0, 1] (the blob profile, shared by all curves)
and `taper(u) = (1 - u^2)^2` for u < 1, else 0, which makes each stamp compact without a jump, so
only a `(2R+1)^2` window of pixels around each point is touched (R = ceil(cut * max r)). With
weights equal to the arc-length step between samples, a curve's image approximates the line
integral of the blob along the curve and does not depend on how densely it is sampled.

Cost: forward and backward are linear in (batch x curves x points x window pixels); the image
size enters only through the zero-initialised output and the scatter-add.
"""

from __future__ import annotations

import math

import torch

from invrender.core.geometry.splines import evaluate_segments, segment_coefficients
from invrender.core.render.registry import RendererSpec, register_renderer


def blob_values(profile: torch.Tensor, distance: torch.Tensor, radius: torch.Tensor, cut: float) -> torch.Tensor:
    """The blob `f(exp(-d/r)) * taper(d / (cut r))`, differentiable by autograd.

    profile: (*batch, M) values of f at M uniform nodes on [0, 1]; distance, radius: (*batch, ...)
    in pixels (radius broadcastable). Returns the shape of `distance`.
    """
    ratio = distance / radius
    z = torch.exp(-ratio)
    taper = (1.0 - (ratio / cut) ** 2).clamp_min(0.0) ** 2
    return evaluate_segments(segment_coefficients(profile), z) * taper


def blob_fwhm(profile: torch.Tensor, cut: float, samples: int = 401) -> float:
    """Full width at half maximum of the cross-section of a straight line of blobs, in units of r.

    The cross-section is the line integral `c(u) = int B(sqrt(u^2 + t^2)) dt` of the blob of radius 1
    with profile `profile` (M,), computed by the trapezoidal rule; the half-maximum point is
    interpolated linearly. For the Gaussian profile f(z) = exp(-2 ln(z)^2) without the cut this is
    sqrt(2 ln 2) = 1.177. It converts between blob radii and the body widths a user measures.
    """
    grid = torch.linspace(0.0, cut, samples, dtype=torch.float64)
    distance = torch.sqrt(grid[:, None] ** 2 + grid[None, :] ** 2)  # (u, t)
    values = blob_values(
        profile.detach().double()[None], distance[None], torch.ones(1, 1, 1, dtype=torch.float64), cut
    )[0]
    section = torch.trapezoid(values, grid, dim=1)
    half = section[0] / 2
    k = int(torch.nonzero(section < half)[0]) if bool((section < half).any()) else samples - 1
    u0, u1, c0, c1 = grid[k - 1], grid[k], section[k - 1], section[k]
    return float(2 * (u0 + (c0 - half) / (c0 - c1) * (u1 - u0)))


def render_curves(
    centers: torch.Tensor,
    radii: torch.Tensor,
    weights: torch.Tensor,
    profile: torch.Tensor,
    shape: tuple[int, int],
    cut: float = 2.0,
) -> torch.Tensor:
    """Render each curve into its own image by splatting blobs at its sample points.

    centers: (B, N, P, 2) sample points [x, y] in pixels (B batch, e.g. seeds; N curves; P points).
    radii:   (B, N, P) blob radius `r` in pixels (> 0).
    weights: (B, N, P) weight of each stamp (e.g. the arc-length step in pixels).
    profile: (B, M) blob profile values at M uniform nodes of z in [0, 1].
    shape:   (H, W) of the output.
    Returns (B, N, H, W). Stamps falling partly outside the image are clipped. Differentiable
    with respect to centers, radii, weights and profile (the window placement, a rounding of the
    centres, is piecewise constant and carries no gradient).
    """
    return _SplatBlobs.apply(centers, radii, weights, segment_coefficients(profile), tuple(shape), float(cut))


def _window_offsets(radius: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer pixel offsets (Q,) within the disc that can hold a stamp of support `radius`.

    A rounded centre is at most sqrt(2)/2 px from the true one, so the disc has that margin.
    """
    offsets = torch.arange(-radius, radius + 1, device=device)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    keep = dx**2 + dy**2 <= (radius + 0.7072) ** 2
    return dx[keep], dy[keep]


class _SplatBlobs(torch.autograd.Function):
    """Fused splatting with an analytic backward pass (autograd of the naive version stores and
    replays ~30 element-wise ops over batch x curves x points x window; this does ~12).

    Per element (stamp i, pixel p): dx = p_x - c_x, dy = p_y - c_y, d = |(dx, dy)|, rho = d / r,
    z = exp(-rho), blob B(rho) = f(z) T(rho) with T(rho) = (1 - rho^2/cut^2)^2 (0 beyond cut),
    value = w B. With G the incoming gradient at p:
        dL/dw   = sum_p G B
        dL/dc   = sum_p G w B'(rho) (-(dx, dy) / (d r))
        dL/dr   = sum_p G w B'(rho) (-rho / r)
        dL/dcoef_j = sum_{p in segment j} G w T (1, t, t^2, t^3)
    where B'(rho) = -z f'(z) T + f T' and f is the cubic of segment j at local parameter t.
    """

    @staticmethod
    def forward(ctx, centers, radii, weights, coefficients, shape, cut):
        B, N, P, _ = centers.shape
        H, W = shape
        n_segments = coefficients.shape[-2]
        R = max(1, math.ceil(cut * float(radii.max())))
        ox, oy = _window_offsets(R, centers.device)
        base = centers.round().long()
        px = base[..., 0, None] + ox  # (B, N, P, Q)
        py = base[..., 1, None] + oy
        inside = ((px >= 0) & (px < W) & (py >= 0) & (py < H)).to(centers.dtype)
        dx = px.to(centers.dtype) - centers[..., 0, None]
        dy = py.to(centers.dtype) - centers[..., 1, None]
        d = torch.sqrt(dx * dx + dy * dy + 1e-12)
        r = radii[..., None]
        rho = d / r
        z = torch.exp(-rho)
        u = z * n_segments
        j = u.floor().clamp_(max=n_segments - 1)
        t = u - j
        j = j.long() + (torch.arange(B, device=centers.device) * n_segments).reshape(B, 1, 1, 1)
        a, b, c, e = coefficients.reshape(-1, 4)[j].unbind(-1)
        f = a + t * (b + t * (c + t * e))
        df_dz = (b + t * (2 * c + 3 * t * e)) * n_segments
        q = (1.0 - (rho / cut) ** 2).clamp_min(0.0)
        taper = q * q
        dtaper = -4.0 * rho / cut**2 * q
        wi = weights[..., None] * inside
        blob = f * taper
        values = wi * blob
        image_index = torch.arange(B * N, device=centers.device).reshape(B, N, 1, 1) * (H * W)
        flat_index = (image_index + py.clamp(0, H - 1) * W + px.clamp(0, W - 1)).reshape(-1)
        out = centers.new_zeros(B * N * H * W).index_add_(0, flat_index, values.reshape(-1))
        # What the backward pass needs, per element: the gradient factor of rho, the offsets.
        slope = wi * (-z * df_dz * taper + f * dtaper) / (d * r)
        ctx.save_for_backward(
            flat_index,
            dx,
            dy,
            slope,
            inside * blob,
            radii,
            t if ctx.needs_input_grad[3] else None,
            j if ctx.needs_input_grad[3] else None,
            wi * taper if ctx.needs_input_grad[3] else None,
        )
        ctx.coefficient_shape = coefficients.shape
        return out.reshape(B, N, H, W)

    @staticmethod
    def backward(ctx, grad_out):
        flat_index, dx, dy, slope, blob, radii, t, j, wt = ctx.saved_tensors
        G = grad_out.reshape(-1)[flat_index].reshape(dx.shape)
        Gs = G * slope
        grad_centers = grad_radii = grad_weights = grad_coefficients = None
        if ctx.needs_input_grad[0]:
            grad_centers = -torch.stack([(Gs * dx).sum(-1), (Gs * dy).sum(-1)], dim=-1)
        if ctx.needs_input_grad[1]:
            grad_radii = -(Gs * (dx * dx + dy * dy)).sum(-1) / radii
        if ctx.needs_input_grad[2]:
            grad_weights = (G * blob).sum(-1)
        if ctx.needs_input_grad[3]:
            g = (G * wt).reshape(-1)
            tf = t.reshape(-1)
            powers = torch.stack([g, g * tf, g * tf * tf, g * tf * tf * tf], dim=-1)
            grad_coefficients = torch.zeros(ctx.coefficient_shape, dtype=grad_out.dtype, device=grad_out.device)
            grad_coefficients = (
                grad_coefficients.reshape(-1, 4).index_add_(0, j.reshape(-1), powers).reshape(ctx.coefficient_shape)
            )
        return grad_centers, grad_radii, grad_weights, grad_coefficients, None, None


def combine_sum_max(images: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Combine per-curve images (B, N, H, W) as `mix * max + (1 - mix) * sum`; mix (B,) in [0, 1].

    Summation suits translucent overlapping bodies, the maximum opaque ones; the mix is learned.
    """
    mix = mix.reshape(-1, 1, 1)
    return mix * images.amax(dim=1) + (1.0 - mix) * images.sum(dim=1)


register_renderer(
    RendererSpec(
        name="splat2d",
        kind="curves",
        render=render_curves,
        device_types=("cpu", "cuda"),
        cost="forward and backward linear in batch x curves x points x window pixels (window ~ (2 cut r)^2)",
    )
)
