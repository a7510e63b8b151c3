"""The loss registry: every loss and regulariser by name, weighted from config.

A method's forward pass returns a dict of named quantities (tensors with a leading seed axis S);
each registered loss reads the quantities it documents and returns one value per seed, shape (S,).
A config names the terms it wants with their weights, e.g. `{recon_mse: 1.0, curvature: 2e-3}`.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

Quantities = Mapping[str, torch.Tensor]
LossFn = Callable[[Quantities], torch.Tensor]

LOSSES: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    def decorate(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} registered twice")
        LOSSES[name] = fn
        return fn

    return decorate


def check_weights(weights: Mapping[str, float]) -> None:
    """Raise ValueError naming any unknown loss or non-numeric weight (a config error)."""
    for name, weight in weights.items():
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise ValueError(f"weight of loss {name!r} must be a number, got {weight!r}")


def weighted_losses(quantities: Quantities, weights: Mapping[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss per seed (S,) and each term (S,), unweighted; terms of zero weight are skipped."""
    terms = {name: LOSSES[name](quantities) for name, w in weights.items() if w != 0}
    total = sum(float(weights[name]) * value for name, value in terms.items())
    return total, terms


# ---------------------------------------------------------------- image terms


@register_loss("recon_mse")
def recon_mse(q: Quantities) -> torch.Tensor:
    """Mean squared difference of `render` and `target`, both (S, H, W) or (S, ...)."""
    diff = q["render"] - q["target"]
    return diff.pow(2).flatten(1).mean(1)


@register_loss("intensity_weighted_mse")
def intensity_weighted_mse(q: Quantities) -> torch.Tensor:
    """<(render - target)^2, target> / <target^2, target> (negative target clipped to 0): the squared
    error where the target is bright, relative to the target's own weighted energy (deltaMic's
    shape loss). `render` and `target` (S, ...)."""
    weight = q["target"].clamp_min(0)
    return ((q["render"] - q["target"]).pow(2) * weight).flatten(1).sum(1) / weight.pow(3).flatten(1).sum(1)


# ---------------------------------------------------------------- shape priors


@register_loss("length_prior")
def length_prior(q: Quantities) -> torch.Tensor:
    """Sum over curves of (length - prior length)^2; `length` (S, N), `length_prior` (N,)."""
    return (q["length"] - q["length_prior"]).pow(2).sum(-1)


@register_loss("curvature")
def curvature(q: Quantities) -> torch.Tensor:
    """Sum over curves of their bending energy; `bending` (S, N)."""
    return q["bending"].sum(-1)


@register_loss("knot_spacing")
def knot_spacing(q: Quantities) -> torch.Tensor:
    """Sum over curves of the squared coefficient of variation of their knot gaps,
    mean_k (g_k / mean(g) - 1)^2; `knot_gaps` (S, N, K-1). Zero for evenly spaced knots and
    independent of the curve's size, it stops knots sliding along the curve."""
    gaps = q["knot_gaps"]
    relative = gaps / gaps.mean(-1, keepdim=True).clamp_min(1e-12)
    return (relative - 1.0).pow(2).mean(-1).sum(-1)


@register_loss("outside")
def outside(q: Quantities) -> torch.Tensor:
    """Sum over curves of the mean squared distance of their sample points outside the image;
    `outside` (S, N, P), normalised units. The image says nothing about a body beyond its border,
    so without this a curve could grow out of the image for free."""
    return q["outside"].pow(2).mean(-1).sum(-1)


@register_loss("min_width_prior")
def min_width_prior(q: Quantities) -> torch.Tensor:
    """Sum over curves of (smallest relative knot width - its prior)^2; `min_width_ratio` (S, N)."""
    return (q["min_width_ratio"] - q["min_width_ratio_prior"]).pow(2).sum(-1)


@register_loss("width_prior")
def width_prior(q: Quantities) -> torch.Tensor:
    """(global width - its prior)^2; `width` (S,), `width_prior` scalar; both in normalised units."""
    return (q["width"] - q["width_prior"]).pow(2)


# ---------------------------------------------------------------- masks and polygons


@register_loss("balloon")
def balloon(q: Quantities) -> torch.Tensor:
    """mean(1 - render): the balloon force of classical active contours as a loss, pushing a
    rendered mask `render` (S, H, W) in [0, 1] to grow (ACDRNet's L_B)."""
    return (1.0 - q["render"]).flatten(1).mean(1)


@register_loss("polygon_curvature")
def polygon_curvature(q: Quantities) -> torch.Tensor:
    """sum_j |p_{j-1} - 2 p_j + p_{j+1}|^2 over the vertices of `polygon` (S, K, 2), closed
    (ACDRNet's L_K); the polygon in the units its weight is meant for."""
    from invrender.core.geometry.polygons import second_differences

    return second_differences(q["polygon"]).pow(2).sum((-2, -1))


@register_loss("mask_bce")
def mask_bce(q: Quantities) -> torch.Tensor:
    """Binary cross-entropy of `logits` (S, H, W) against the mask `target` (S, H, W) in [0, 1],
    mean per image: the plain pixel classifier's loss."""
    return torch.nn.functional.binary_cross_entropy_with_logits(q["logits"], q["target"], reduction="none").flatten(1).mean(1)


@register_loss("mask_dice")
def mask_dice(q: Quantities) -> torch.Tensor:
    """1 - 2 <render, target> / (|render| + |target|), per image: the soft Dice loss of a mask
    `render` (S, H, W) in [0, 1] against `target`. Every image counts alike, however small its
    object, as in a mean of per-image scores (where a mean squared error barely notices a small
    object). An empty target and render give 0."""
    overlap = (q["render"] * q["target"]).flatten(1).sum(1)
    total = q["render"].flatten(1).sum(1) + q["target"].flatten(1).sum(1)
    return 1.0 - 2.0 * overlap / total.clamp(min=1e-6) - (total <= 1e-6).to(total)


@register_loss("star_smoothness")
def star_smoothness(q: Quantities) -> torch.Tensor:
    """sum over cells of mean_j (rho_{j-1} - 2 rho_j + rho_{j+1})^2, rho = log radius, for star-convex
    contours `log_radii` (S, N, R); divided by the pixel count of `render` (S, H, W) so that its
    weight is per pixel like recon_mse's. Scale-free: a circle of any size costs 0."""
    rho = q["log_radii"]
    bending = (torch.roll(rho, 1, dims=-1) - 2 * rho + torch.roll(rho, -1, dims=-1)).pow(2).mean(-1).sum(-1)
    return bending / q["render"][0].numel()


@register_loss("mask_overlap")
def mask_overlap(q: Quantities) -> torch.Tensor:
    """mean over pixels of max(coverage - 1, 0), `coverage` (S, H, W) the summed coverage of all
    cells: the area where cells overlap, per pixel (cells are disjoint in a 2D section)."""
    return (q["coverage"] - 1.0).clamp_min(0.0).flatten(1).mean(1)


# ---------------------------------------------------------------- meshes in a volume (spine-seg)


@register_loss("appearance_l1")
def appearance_l1(q: Quantities) -> torch.Tensor:
    """Mean |predicted - sampled| over the points where the image is known (`known` (N,) bool, all
    if absent): the appearance model's intensity at each point's signed distance against the image
    sampled there, `predicted` and `sampled` (S, N)."""
    error = (q["predicted"] - q["sampled"]).abs()
    known = q.get("known")
    return error.mean(-1) if known is None else error[:, known].mean(-1)


@register_loss("edge_length")
def edge_length(q: Quantities) -> torch.Tensor:
    """Mean squared edge length of `shape` (S, M, V, 3) (M meshes of one connectivity) over its
    `edges` (E, 2), in the shape's units."""
    shape, edges = q["shape"], q["edges"]
    return (shape[..., edges[:, 0], :] - shape[..., edges[:, 1], :]).pow(2).sum(-1).flatten(1).mean(1)


@register_loss("normal_alignment")
def normal_alignment(q: Quantities) -> torch.Tensor:
    """mean exp(-|n . grad I|) over the vertices where the image is known (`known_vertices` (M, V)
    bool, all if absent): unit vertex `normals` (S, M, V, 3) against the image gradient
    `image_gradient` (S, M, V, 3) at the vertices (per mm): low where surfaces cross edges."""
    alignment = torch.exp(-(q["normals"] * q["image_gradient"]).sum(-1).abs())
    known = q.get("known_vertices")
    return alignment.flatten(1).mean(1) if known is None else alignment[:, known].mean(-1)


@register_loss("mesh_overlap")
def mesh_overlap(q: Quantities) -> torch.Tensor:
    """Mean over points of sum over neighbouring pairs relu(-d_a) relu(-d_b): depth inside two
    meshes at once, `overlap` (S, N) that sum per point (mm^2)."""
    return q["overlap"].mean(-1)


@register_loss("placement_drift")
def placement_drift(q: Quantities) -> torch.Tensor:
    """Mean over meshes of |drift|^2: each mesh's `drift` (S, M, 3) from where it was placed, in
    units of its size (a Gaussian prior on the position that the placement found)."""
    return q["drift"].pow(2).sum(-1).mean(-1)


@register_loss("spectral_energy")
def spectral_energy(q: Quantities) -> torch.Tensor:
    """sum over meshes m of |Lambda^0.5 U_m|^2: each mesh's spectral coefficients `coefficients`
    (S, M, k, 3) kept near the template (U = 0), weighted by the modes' `eigenvalues` (k,); with
    `eigenvalues` of a unit-area-mean basis this is the mean squared surface gradient of the
    displacement. Where the image says nothing (a part beyond the field of view), the template holds."""
    return (q["eigenvalues"][:, None] * q["coefficients"].pow(2)).sum((1, 2, 3))


@register_loss("spectral_variance")
def spectral_variance(q: Quantities) -> torch.Tensor:
    """sum over neighbours m, m+1 of |Lambda^0.5 (U_m - U_{m+1})|^2: spectral coefficients
    `coefficients` (S, M, k, 3) of neighbouring meshes in a chain kept alike, weighted by the modes'
    `eigenvalues` (k,) so that fine detail differs less than coarse shape."""
    difference = q["coefficients"][:, 1:] - q["coefficients"][:, :-1]
    return (q["eigenvalues"][:, None] * difference.pow(2)).sum((1, 2, 3))
