"""cell-seg's priors on the star-convex cell contours: smooth log radii, no overlap between cells.
Registered in the loss registry (`core/losses.py`) when the method's package is imported."""

from __future__ import annotations

import torch

from invrender.core.losses import Quantities, register_loss


@register_loss("star_smoothness", reads=("log_radii", "render"))
def star_smoothness(q: Quantities) -> torch.Tensor:
    """sum over cells of mean_j (rho_{j-1} - 2 rho_j + rho_{j+1})^2, rho = log radius, for star-convex
    contours `log_radii` (S, N, R); divided by the pixel count of `render` (S, H, W) so that its
    weight is per pixel like recon_mse's. Scale-free: a circle of any size costs 0."""
    rho = q["log_radii"]
    bending = (torch.roll(rho, 1, dims=-1) - 2 * rho + torch.roll(rho, -1, dims=-1)).pow(2).mean(-1).sum(-1)
    return bending / q["render"][0].numel()


@register_loss("mask_overlap", reads=("coverage",))
def mask_overlap(q: Quantities) -> torch.Tensor:
    """mean over pixels of max(coverage - 1, 0), `coverage` (S, H, W) the summed coverage of all
    cells: the area where cells overlap, per pixel (cells are disjoint in a 2D section)."""
    return (q["coverage"] - 1.0).clamp_min(0.0).flatten(1).mean(1)
