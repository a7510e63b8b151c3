"""spine-seg's terms (Kim and Park): the appearance model's fit to the CT, and the priors on the
vertebra meshes. Registered in the loss registry (`core/losses.py`) when the method's package is
imported."""

from __future__ import annotations

import torch

from invrender.core.losses import Quantities, register_loss


@register_loss("appearance_l1", reads=("predicted", "sampled"))
def appearance_l1(q: Quantities) -> torch.Tensor:
    """Mean |predicted - sampled| over the points where the image is known (`known` (N,) bool, all
    if absent): the appearance model's intensity at each point's signed distance against the image
    sampled there, `predicted` and `sampled` (S, N)."""
    error = (q["predicted"] - q["sampled"]).abs()
    known = q.get("known")
    return error.mean(-1) if known is None else error[:, known].mean(-1)


@register_loss("edge_length", reads=("shape", "edges"))
def edge_length(q: Quantities) -> torch.Tensor:
    """Mean squared edge length of `shape` (S, M, V, 3) (M meshes of one connectivity) over its
    `edges` (E, 2), in the shape's units."""
    shape, edges = q["shape"], q["edges"]
    return (shape[..., edges[:, 0], :] - shape[..., edges[:, 1], :]).pow(2).sum(-1).flatten(1).mean(1)


@register_loss("normal_alignment", reads=("normals", "image_gradient"))
def normal_alignment(q: Quantities) -> torch.Tensor:
    """mean exp(-|n . grad I|) over the vertices where the image is known (`known_vertices` (M, V)
    bool, all if absent): unit vertex `normals` (S, M, V, 3) against the image gradient
    `image_gradient` (S, M, V, 3) at the vertices (per mm): low where surfaces cross edges."""
    alignment = torch.exp(-(q["normals"] * q["image_gradient"]).sum(-1).abs())
    known = q.get("known_vertices")
    return alignment.flatten(1).mean(1) if known is None else alignment[:, known].mean(-1)


@register_loss("mesh_overlap", reads=("overlap",))
def mesh_overlap(q: Quantities) -> torch.Tensor:
    """Mean over points of sum over neighbouring pairs relu(-d_a) relu(-d_b): depth inside two
    meshes at once, `overlap` (S, N) that sum per point (mm^2)."""
    return q["overlap"].mean(-1)


@register_loss("placement_drift", reads=("drift",))
def placement_drift(q: Quantities) -> torch.Tensor:
    """Mean over meshes of |drift|^2: each mesh's `drift` (S, M, 3) from where it was placed, in
    units of its size (a Gaussian prior on the position that the placement found)."""
    return q["drift"].pow(2).sum(-1).mean(-1)


@register_loss("spectral_energy", reads=("coefficients", "eigenvalues"))
def spectral_energy(q: Quantities) -> torch.Tensor:
    """sum over meshes m of |Lambda^0.5 U_m|^2: each mesh's spectral coefficients `coefficients`
    (S, M, k, 3) kept near the template (U = 0), weighted by the modes' `eigenvalues` (k,); with
    `eigenvalues` of a unit-area-mean basis this is the mean squared surface gradient of the
    displacement. Where the image says nothing (a part beyond the field of view), the template holds."""
    return (q["eigenvalues"][:, None] * q["coefficients"].pow(2)).sum((1, 2, 3))


@register_loss("spectral_variance", reads=("coefficients", "eigenvalues"))
def spectral_variance(q: Quantities) -> torch.Tensor:
    """sum over neighbours m, m+1 of |Lambda^0.5 (U_m - U_{m+1})|^2: spectral coefficients
    `coefficients` (S, M, k, 3) of neighbouring meshes in a chain kept alike, weighted by the modes'
    `eigenvalues` (k,) so that fine detail differs less than coarse shape."""
    difference = q["coefficients"][:, 1:] - q["coefficients"][:, :-1]
    return (q["eigenvalues"][:, None] * difference.pow(2)).sum((1, 2, 3))
