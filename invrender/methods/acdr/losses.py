"""ACDRNet's terms on the evolving polygon: the balloon force (L_B) and the curvature (L_K). Registered
in the loss registry (`core/losses.py`) when the method's package is imported."""

from __future__ import annotations

import torch

from invrender.core.losses import Quantities, register_loss


@register_loss("balloon", reads=("render",))
def balloon(q: Quantities) -> torch.Tensor:
    """mean(1 - render): the balloon force of classical active contours as a loss, pushing a
    rendered mask `render` (S, H, W) in [0, 1] to grow (ACDRNet's L_B)."""
    return (1.0 - q["render"]).flatten(1).mean(1)


@register_loss("polygon_curvature", reads=("polygon",))
def polygon_curvature(q: Quantities) -> torch.Tensor:
    """sum_j |p_{j-1} - 2 p_j + p_{j+1}|^2 over the vertices of `polygon` (S, K, 2), closed
    (ACDRNet's L_K); the polygon in the units its weight is meant for."""
    from invrender.core.geometry.polygons import second_differences

    return second_differences(q["polygon"]).pow(2).sum((-2, -1))
