"""Models whose parameters carry a leading seed axis, for vectorised multi-start optimisation.

Every parameter of a `MultiStartModule` has shape `(S, ...)`, one slice per start (seed). A phase
that runs from several seeds widens the model with `expand_seeds(n)`, optimises all slices at once
(their losses are summed, so each slice gets its own gradient and Adam state), then keeps the best
slice with `select_seeds`.

A model may also hold P independent problems side by side (e.g. several crops of one image, see
`stack_starts`): before a multi-start phase it has P slices, one per problem; `expand_seeds(n)`
makes problem p's starts the slices p * n ... p * n + n - 1, and one slice is kept per problem.
Data given per problem, `(P, ...)`, meets the slices through `per_start`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MultiStartModule(nn.Module):
    """Base class: subclasses set `groups`, mapping a group name to the names of its attributes:
    parameters, or sub-modules (all their parameters)."""

    groups: dict[str, tuple[str, ...]] = {}

    @property
    def n_seeds(self) -> int:
        """The number of slices on the leading axis (all starts of all problems)."""
        return next(self.parameters()).shape[0]

    def parameter_groups(self, names: list[str]) -> list[nn.Parameter]:
        """The parameters of the named groups; unknown names raise KeyError."""
        unknown = [n for n in names if n not in self.groups]
        if unknown:
            raise KeyError(f"unknown parameter group(s) {unknown}; known: {sorted(self.groups)}")
        members = [getattr(self, attr) for n in names for attr in self.groups[n]]
        return [p for m in members for p in (m.parameters() if isinstance(m, nn.Module) else [m])]

    def spread_seeds(self, distance: float, n_seeds: int, generator: torch.Generator) -> None:
        """Move the starts 1 ... n_seeds - 1 of every problem `distance` away from its start 0, each a
        random way (a phase's `spread`, after `expand_seeds(n_seeds)`); a model that can says how."""
        raise NotImplementedError(f"{type(self).__name__} cannot spread its starts")

    @torch.no_grad()
    def expand_seeds(self, n_seeds: int) -> None:
        """Replicate each current slice (one per problem) `n_seeds` times, the copies adjacent."""
        for p in self.parameters():
            p.data = p.data.repeat_interleave(n_seeds, dim=0)

    def starts_ended(self, losses: torch.Tensor, kept: Sequence[int]) -> None:
        """Called at the end of a multi-start phase, before `select_seeds`, with each start's
        `losses (P, n_seeds)` (the term the best is chosen by) and the start each problem keeps
        (`kept[p]` in 0..n_seeds-1): a model that can tell something from the starts it is about to
        drop (how far other good starts put its parts) looks here."""

    @torch.no_grad()
    def select_seeds(self, indices: Sequence[int]) -> None:
        """Keep only the slices `indices` (one per problem), in that order."""
        keep = torch.as_tensor(list(indices), dtype=torch.long, device=next(self.parameters()).device)
        for p in self.parameters():
            p.data = p.data.index_select(0, keep)


@torch.no_grad()
def stack_starts(models: Sequence[MultiStartModule]) -> MultiStartModule:
    """One model holding the problems of `models` side by side: the first of them, its parameters
    replaced by all models' parameters concatenated on the leading axis. The models must differ only
    in their parameters' values (the same class, shapes, buffers and settings)."""
    first = models[0]
    others = [dict(m.named_parameters()) for m in models[1:]]
    for name, p in first.named_parameters():
        p.data = torch.cat([p.data, *(o[name].data for o in others)])
    return first


def per_start(values: torch.Tensor, n_slices: int) -> torch.Tensor:
    """Per-problem data `values (P, ...)` for a model's `n_slices` slices `(n_slices, ...)`: problem
    p's row for each of its n_slices / P starts (a view when P is 1)."""
    problems = values.shape[0]
    if problems == 1:
        return values.expand(n_slices, *values.shape[1:])
    return values.repeat_interleave(n_slices // problems, dim=0)
