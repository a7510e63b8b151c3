"""spline-refine's priors on the fitted curves: length, bending, knot spacing, staying in the image,
widths. Registered in the loss registry (`core/losses.py`) when the method's package is imported."""

from __future__ import annotations

import torch

from invrender.core.losses import Quantities, register_loss


@register_loss("length_prior", reads=("length", "length_prior"))
def length_prior(q: Quantities) -> torch.Tensor:
    """Sum over curves of (length - prior length)^2; `length` (S, N), `length_prior` (N,)."""
    return (q["length"] - q["length_prior"]).pow(2).sum(-1)


@register_loss("curvature", reads=("bending",))
def curvature(q: Quantities) -> torch.Tensor:
    """Sum over curves of their bending energy; `bending` (S, N)."""
    return q["bending"].sum(-1)


@register_loss("knot_spacing", reads=("knot_gaps",))
def knot_spacing(q: Quantities) -> torch.Tensor:
    """Sum over curves of the squared coefficient of variation of their knot gaps,
    mean_k (g_k / mean(g) - 1)^2; `knot_gaps` (S, N, K-1). Zero for evenly spaced knots and
    independent of the curve's size, it stops knots sliding along the curve."""
    gaps = q["knot_gaps"]
    relative = gaps / gaps.mean(-1, keepdim=True).clamp_min(1e-12)
    return (relative - 1.0).pow(2).mean(-1).sum(-1)


@register_loss("outside", reads=("outside",))
def outside(q: Quantities) -> torch.Tensor:
    """Sum over curves of the mean squared distance of their sample points outside the image;
    `outside` (S, N, P), normalised units. The image says nothing about a body beyond its border,
    so without this a curve could grow out of the image for free."""
    return q["outside"].pow(2).mean(-1).sum(-1)


@register_loss("min_width_prior", reads=("min_width_ratio", "min_width_ratio_prior"))
def min_width_prior(q: Quantities) -> torch.Tensor:
    """Sum over curves of (smallest relative knot width - its prior)^2; `min_width_ratio` (S, N)."""
    return (q["min_width_ratio"] - q["min_width_ratio_prior"]).pow(2).sum(-1)


@register_loss("width_prior", reads=("width", "width_prior"))
def width_prior(q: Quantities) -> torch.Tensor:
    """(global width - its prior)^2; `width` (S,), `width_prior` scalar; both in normalised units."""
    return (q["width"] - q["width_prior"]).pow(2)


@register_loss("posture_prior", reads=("knots", "init_knots"))
def posture_prior(q: Quantities) -> torch.Tensor:
    """Sum over curves of how far each curve's posture is from its init's: with the knots of a
    curve centred and scaled to unit norm as complex numbers a (its init's b), 1 - |<a, b>|, which
    is half the squared distance between the two shapes after the best rotation (0 for the same
    shape in any position, heading and size). `knots` (S, N, K, 2), `init_knots` (S, N, K, 2)."""

    def shape(knots: torch.Tensor) -> torch.Tensor:
        z = torch.complex(knots[..., 0], knots[..., 1])
        z = z - z.mean(-1, keepdim=True)
        return z / z.abs().pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-9)

    overlap = (shape(q["init_knots"]).conj() * shape(q["knots"])).sum(-1)
    return (1.0 - overlap.abs()).sum(-1)
