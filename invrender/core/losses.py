"""The loss registry: every loss and regulariser by name, weighted from config.

A method's forward pass returns a dict of named quantities (tensors with a leading seed axis S);
each registered loss declares the quantities it reads and returns one value per seed, shape (S,).
A config names the terms it wants with their weights, e.g. `{recon_mse: 1.0, curvature: 2e-3}`;
`check_weights` refuses a term whose quantities the method does not produce. The image and mask
terms any method may use are here; a method's own priors register from its folder
(`methods/<name>/losses.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import torch

Quantities = Mapping[str, torch.Tensor]
LossFn = Callable[[Quantities], torch.Tensor]


@dataclass(frozen=True)
class Loss:
    fn: LossFn
    reads: tuple[str, ...]  # the quantities it needs (optional ones, such as masks of known points, not listed)


LOSSES: dict[str, Loss] = {}


def register_loss(name: str, reads: tuple[str, ...]) -> Callable[[LossFn], LossFn]:
    def decorate(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} registered twice")
        LOSSES[name] = Loss(fn, tuple(reads))
        return fn

    return decorate


def check_weights(weights: Mapping[str, float], produced: Collection[str] | None = None) -> None:
    """Raise ValueError naming an unknown loss, a non-numeric weight, or (given the quantities a
    method `produced`) a loss that reads a quantity the method does not produce (a config error)."""
    for name, weight in weights.items():
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise ValueError(f"weight of loss {name!r} must be a number, got {weight!r}")
        missing = [q for q in LOSSES[name].reads if produced is not None and q not in produced]
        if missing:
            usable = sorted(n for n, loss in LOSSES.items() if set(loss.reads) <= set(produced))
            raise ValueError(
                f"loss {name!r} reads {', '.join(map(repr, missing))}, which this method does not produce; "
                f"its losses: {', '.join(usable)}"
            )


def weighted_losses(
    quantities: Quantities, weights: Mapping[str, float]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss per seed (S,) and each term (S,), unweighted; terms of zero weight are skipped."""
    terms = {name: LOSSES[name].fn(quantities) for name, w in weights.items() if w != 0}
    total = sum(float(weights[name]) * value for name, value in terms.items())
    return total, terms


# ---------------------------------------------------------------- image and mask terms


@register_loss("recon_mse", reads=("render", "target"))
def recon_mse(q: Quantities) -> torch.Tensor:
    """Mean squared difference of `render` and `target`, both (S, H, W) or (S, ...)."""
    diff = q["render"] - q["target"]
    return diff.pow(2).flatten(1).mean(1)


@register_loss("intensity_weighted_mse", reads=("render", "target"))
def intensity_weighted_mse(q: Quantities) -> torch.Tensor:
    """<(render - target)^2, target> / <target^2, target> (negative target clipped to 0): the squared
    error where the target is bright, relative to the target's own weighted energy (deltaMic's
    shape loss). `render` and `target` (S, ...)."""
    weight = q["target"].clamp_min(0)
    return ((q["render"] - q["target"]).pow(2) * weight).flatten(1).sum(1) / weight.pow(3).flatten(1).sum(1)


@register_loss("mask_bce", reads=("logits", "target"))
def mask_bce(q: Quantities) -> torch.Tensor:
    """Binary cross-entropy of `logits` (S, H, W) against the mask `target` (S, H, W) in [0, 1],
    mean per image: the plain pixel classifier's loss."""
    return (
        torch.nn.functional.binary_cross_entropy_with_logits(q["logits"], q["target"], reduction="none")
        .flatten(1)
        .mean(1)
    )


@register_loss("mask_dice", reads=("render", "target"))
def mask_dice(q: Quantities) -> torch.Tensor:
    """1 - 2 <render, target> / (|render| + |target|), per image: the soft Dice loss of a mask
    `render` (S, H, W) in [0, 1] against `target`. Every image counts alike, however small its
    object, as in a mean of per-image scores (where a mean squared error barely notices a small
    object). An empty target and render give 0."""
    overlap = (q["render"] * q["target"]).flatten(1).sum(1)
    total = q["render"].flatten(1).sum(1) + q["target"].flatten(1).sum(1)
    return 1.0 - 2.0 * overlap / total.clamp(min=1e-6) - (total <= 1e-6).to(total)
