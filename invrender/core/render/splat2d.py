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


def blob_values(profile: torch.Tensor, distance: torch.Tensor, radius: torch.Tensor, cut: float) -> torch.Tensor:
    """The blob `f(exp(-d/r)) * taper(d / (cut r))`.

    profile: (*batch, M) values of f at M uniform nodes on [0, 1]; distance, radius: (*batch, ...)
    in pixels (radius broadcastable). Returns the shape of `distance`.
    """
    ratio = distance / radius
    z = torch.exp(-ratio)
    taper = (1.0 - (ratio / cut) ** 2).clamp_min(0.0) ** 2
    return evaluate_segments(segment_coefficients(profile), z) * taper


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
    Returns (B, N, H, W). Stamps falling partly outside the image are clipped.
    """
    B, N, P, _ = centers.shape
    H, W = shape
    R = max(1, math.ceil(cut * float(radii.detach().max())))
    offsets = torch.arange(-R, R + 1, device=centers.device)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    base = centers.detach().round().long()  # (B, N, P, 2)
    px = base[..., 0, None] + dx.reshape(-1)  # (B, N, P, Q)
    py = base[..., 1, None] + dy.reshape(-1)
    inside = (px >= 0) & (px < W) & (py >= 0) & (py < H)
    distance = torch.sqrt((px - centers[..., 0, None]) ** 2 + (py - centers[..., 1, None]) ** 2 + 1e-12)
    values = blob_values(profile, distance, radii[..., None], cut) * (weights[..., None] * inside)
    image_index = torch.arange(B * N, device=centers.device).reshape(B, N, 1, 1) * (H * W)
    flat_index = image_index + py.clamp(0, H - 1) * W + px.clamp(0, W - 1)
    out = centers.new_zeros(B * N * H * W)
    out = out.index_add(0, flat_index.reshape(-1), values.reshape(-1))
    return out.reshape(B, N, H, W)


def combine_sum_max(images: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Combine per-curve images (B, N, H, W) as `mix * max + (1 - mix) * sum`; mix (B,) in [0, 1].

    Summation suits translucent overlapping bodies, the maximum opaque ones; the mix is learned.
    """
    mix = mix.reshape(-1, 1, 1)
    return mix * images.amax(dim=1) + (1.0 - mix) * images.sum(dim=1)
