"""When a fit has diverged: its parameters are no longer finite, or have left the image by orders of
magnitude (a learning rate far too large throws them there in one step, long before the loss turns
NaN). The phase scheduler checks the trained parameters after every step and asks the method's own
`Bound` (which parameters to measure against which image) through `far_outside` and `too_wide`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from invrender.core.optim.multistart import MultiStartModule

#: How far a parameter may stray, in image sizes (the largest side), before the fit counts as
#: diverged. Not a tuning knob: a fit that wanders further than this has nothing left to do with
#: the image, and a plausible one never comes close.
MAX_IMAGE_SIZES = 10.0

#: A method's check of its model's state: why it has diverged, in a few words, or None.
Bound = Callable[[MultiStartModule], str | None]


class OptimisationDiverged(RuntimeError):
    """A fit diverged; the model holds the last state before it did. `records` are the phase records
    up to and including the phase that diverged (`PhaseRecord`s)."""

    def __init__(self, message: str, records: list | None = None):
        super().__init__(message)
        self.records = list(records or [])


def nonfinite(params: Iterable[torch.Tensor]) -> bool:
    """Whether any of the tensors holds a NaN or an infinity."""
    return any(not bool(torch.isfinite(p).all()) for p in params)


def far_outside(points: torch.Tensor, size: Sequence[float], what: str, unit: str = "px") -> str | None:
    """Why `points` (..., D) count as diverged, or None: some lie more than MAX_IMAGE_SIZES times the
    image's largest side outside the box [0, size_d] of each axis d (NaN counts as outside).

    `size` (D,) in the points' units, e.g. (W - 1, H - 1) px for pixel centres [x, y]; `what`
    names the points in the reason, e.g. "spline knots". No points (a frame without cells): None."""
    if points.numel() == 0:
        return None
    upper = points.new_tensor(list(size))
    distance = torch.maximum(-points, points - upper).clamp_min(0.0).amax(-1)  # per point, along the worst axis
    worst = float(torch.nan_to_num(distance.detach(), nan=torch.inf).max())
    if worst <= MAX_IMAGE_SIZES * max(size):
        return None
    box = " x ".join(f"{s:.3g}" for s in size)
    return (
        f"{what} moved {worst:.3g} {unit} outside the image ({box} {unit}; more than {MAX_IMAGE_SIZES:g} image sizes)"
    )


def too_wide(width: torch.Tensor, size: Sequence[float], what: str, unit: str = "px") -> str | None:
    """Why a width (any shape; a radius, a sigma) counts as diverged, or None: it is more than
    MAX_IMAGE_SIZES times the image's largest side `max(size)` (NaN counts as too wide; none: None)."""
    if width.numel() == 0:
        return None
    widest = float(torch.nan_to_num(width.detach(), nan=torch.inf).max())
    if widest <= MAX_IMAGE_SIZES * max(size):
        return None
    return f"{what} grew to {widest:.3g} {unit}, more than {MAX_IMAGE_SIZES:g} times the image ({max(size):.3g} {unit})"
