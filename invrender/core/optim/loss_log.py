"""The record of a job's optimisation as its step callback sees it: the loss at every step and where
each phase began, for the loss figure (core/figures.py) and the fits' lists of losses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: What a fit calls after every step: (phase name, step, steps in the phase, loss; NaN when none).
StepCallback = Callable[[str, int, int, float], None]


@dataclass
class LossLog:
    """A step callback `(phase, step, steps, loss)` that keeps every step's loss and passes the step
    on to `forward` (e.g. the runner's progress bar). A phase begins at its step 0, or where the
    phase name changes: the phases of several fits (levels, frames, rounds) follow each other."""

    forward: StepCallback | None = None
    losses: list[float] = field(default_factory=list)  # one per step, in the order they ran (NaN: none)
    phase_starts: list[tuple[int, str]] = field(default_factory=list)  # (index into losses, phase name)

    def __call__(self, phase: str, step: int, steps: int, loss: float) -> None:
        if step == 0 or not self.phase_starts or self.phase_starts[-1][1] != phase:
            self.phase_starts.append((len(self.losses), phase))
        self.losses.append(float(loss))
        if self.forward is not None:
            self.forward(phase, step, steps, loss)
