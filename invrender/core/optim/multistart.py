"""Models whose parameters carry a leading seed axis, for vectorised multi-start optimisation.

Every parameter of a `MultiStartModule` has shape `(S, ...)`, one slice per start (seed). A phase
that runs from several seeds widens the model with `expand_seeds(S)`, optimises all slices at once
(their losses are summed, so each slice gets its own gradient and Adam state), then keeps one
slice with `select_seed(i)`.
"""

from __future__ import annotations

import torch
from torch import nn


class MultiStartModule(nn.Module):
    """Base class: subclasses set `groups`, mapping a group name to the names of its attributes:
    parameters, or sub-modules (all their parameters)."""

    groups: dict[str, tuple[str, ...]] = {}

    @property
    def n_seeds(self) -> int:
        return next(self.parameters()).shape[0]

    def parameter_groups(self, names: list[str]) -> list[nn.Parameter]:
        """The parameters of the named groups; unknown names raise KeyError."""
        unknown = [n for n in names if n not in self.groups]
        if unknown:
            raise KeyError(f"unknown parameter group(s) {unknown}; known: {sorted(self.groups)}")
        members = [getattr(self, attr) for n in names for attr in self.groups[n]]
        return [p for m in members for p in (m.parameters() if isinstance(m, nn.Module) else [m])]

    @torch.no_grad()
    def expand_seeds(self, n_seeds: int) -> None:
        """Replicate the current (single) start `n_seeds` times."""
        for p in self.parameters():
            p.data = p.data[:1].expand(n_seeds, *p.shape[1:]).clone()

    @torch.no_grad()
    def select_seed(self, index: int) -> None:
        """Keep only start `index`."""
        for p in self.parameters():
            p.data = p.data[index : index + 1].clone()
