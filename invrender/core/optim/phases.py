"""The phase scheduler: runs the optimisation phases a config declares, for any method.

A phase (one entry of the config's `phases` list) says

    name:      a label for logs and the manifest
    train:     parameter groups that are optimised; all others are frozen
    optimizer: a name in OPTIMIZERS (default adam)
    group_optimizers: {group: name}: trained groups that use another optimizer than `optimizer`
               (e.g. VectorAdam for vertices, Adam for a network), stepped together
    lr, schedule (constant | cosine), final_lr_factor (cosine ends at lr * factor)
    lr_scale:  {group: factor}: a trained group's learning rate is lr * factor (default 1)
    optimizer_options: keyword arguments of the optimizer(s), e.g. {betas: [0.9, 0.9]}
    steps:     the maximum number of steps
    stop:      {patience, rtol}: stop early once the best loss has not improved by a relative rtol
               for `patience` steps (patience 0 runs every step)
    alternate: [part, ...]: instead of one optimisation, parts that run in turn at every step (or
               every `every` steps), each with its own train, optimizer, lr, options and `loss`
               weights; the first part's loss is the phase's (stop rule, progress, records)
    grad_noise: {eta, gamma}: Gaussian noise of variance eta / (1 + t)^gamma added to every
               gradient at step t (a simulated-annealing exploration; eta 0 disables it)
    seeds:     run this many starts at once (each with its own noise) and keep the one with the
               lowest `select_by` term at the end
    ramps:     {name: {start, end, until}}: values that move linearly from start to end over the
               first `until` fraction of the phase (e.g. a blur that fades out), passed to the
               objective through the context
    options:   free-form settings the method's objective reads (e.g. what to draw)

The objective is the method's forward pass: `objective(model, context) -> quantities`, the dict
that the loss registry's terms read. The model is a MultiStartModule.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from invrender.core.losses import weighted_losses
from invrender.core.optim.adam_variants import AdamUniform, VectorAdam
from invrender.core.optim.multistart import MultiStartModule

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adam_uniform": AdamUniform,
    "vector_adam": VectorAdam,
}


@dataclass
class PhaseContext:
    """What the objective may read about the running phase."""

    phase: Mapping[str, Any]
    step: int
    n_steps: int
    ramps: dict[str, float]

    def option(self, name: str, default: Any = None) -> Any:
        return (self.phase.get("options") or {}).get(name, default)


@dataclass
class PhaseRecord:
    """What happened in one phase, for the manifest."""

    name: str
    steps: int
    seconds: float
    final: dict[str, float]
    seed_losses: list[float] = field(default_factory=list)
    best_seed: int = 0
    diverged: bool = False


class OptimisationDiverged(RuntimeError):
    """The loss became NaN or infinite; the model holds the last finite state."""


def ramp_value(spec: Mapping[str, float], progress: float) -> float:
    """Linear ramp from `start` to `end` over the first `until` fraction of a phase."""
    until = float(spec.get("until", 1.0))
    fraction = 1.0 if until <= 0 else min(progress / until, 1.0)
    return float(spec["start"]) + (float(spec["end"]) - float(spec["start"])) * fraction


def _learning_rate_factor(phase: Mapping[str, Any], step: int, n_steps: int) -> float:
    schedule = phase.get("schedule", "constant")
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        end = float(phase.get("final_lr_factor", 0.0))
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * step / max(n_steps, 1)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; known: constant, cosine")


def run_phases(
    model: MultiStartModule,
    objective: Callable[[MultiStartModule, PhaseContext], Mapping[str, torch.Tensor]],
    phases: list[Mapping[str, Any]],
    weights: Mapping[str, float],
    seed: int = 0,
    select_by: str = "recon_mse",
    on_step: Callable[[str, int, int, float], None] | None = None,
) -> list[PhaseRecord]:
    """Run the phases in order; returns one record per phase.

    Raises OptimisationDiverged (after restoring the last finite parameters) if the loss
    becomes non-finite.
    """
    records = []
    for index, phase in enumerate(phases):
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed * 1009 + index)
        records.append(_run_phase(model, objective, phase, weights, generator, select_by, on_step))
    return records


@dataclass
class _Part:
    """One alternating part of a phase (a plain phase is one part): what it trains and how."""

    spec: Mapping[str, Any]  # the phase's settings with the part's own on top
    params: list[torch.nn.Parameter]
    optimizers: list[torch.optim.Optimizer]
    lr: float
    weights: Mapping[str, float]
    every: int


def _make_part(model: MultiStartModule, spec: Mapping[str, Any], weights: Mapping[str, float]) -> _Part:
    train_groups = list(spec["train"])
    lr_scale = dict(spec.get("lr_scale") or {})
    unknown = sorted(set(lr_scale) - set(train_groups))
    if unknown:
        raise ValueError(f"lr_scale names group(s) {unknown} that phase {spec.get('name', 'phase')!r} does not train")
    group_optimizers = dict(spec.get("group_optimizers") or {})
    unknown = sorted(set(group_optimizers) - set(train_groups))
    if unknown:
        raise ValueError(f"group_optimizers names group(s) {unknown} that phase {spec.get('name', 'phase')!r} does not train")
    chosen = {g: group_optimizers.get(g, spec.get("optimizer", "adam")) for g in train_groups}
    for name in chosen.values():
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    lr = float(spec["lr"])
    options = {k: v if isinstance(v, (int, float, str)) else tuple(v) for k, v in (spec.get("optimizer_options") or {}).items()}
    optimizers = []
    for name in dict.fromkeys(chosen.values()):  # one optimizer per distinct name, in group order
        param_groups = [{"params": model.parameter_groups([g]), "lr_factor": float(lr_scale.get(g, 1.0))} for g in train_groups if chosen[g] == name]
        param_groups = [g for g in param_groups if g["params"]]
        if param_groups:
            optimizers.append(OPTIMIZERS[name](param_groups, lr=lr, **options))
    return _Part(spec, model.parameter_groups(train_groups), optimizers, lr, dict(spec.get("loss") or weights), int(spec.get("every", 1)))


def _run_phase(model, objective, phase, weights, generator, select_by, on_step) -> PhaseRecord:
    start_time = time.perf_counter()
    name = str(phase.get("name", "phase"))
    n_steps = int(phase["steps"])
    n_seeds = int(phase.get("seeds", 1))
    if n_seeds > 1:
        model.expand_seeds(n_seeds)
    # `alternate: [part, ...]` runs each part in turn at every step (each with its own optimizer,
    # trained groups, options and loss weights), e.g. shape and PSF steps staggered.
    shared = {k: v for k, v in phase.items() if k != "alternate"}
    parts = [_make_part(model, {**shared, **part}, weights) for part in (phase.get("alternate") or [shared])]
    noise = phase.get("grad_noise") or {}
    eta, gamma = float(noise.get("eta", 0.0)), float(noise.get("gamma", 0.55))
    stop = phase.get("stop") or {}
    patience, rtol = int(stop.get("patience", 0)), float(stop.get("rtol", 0.0))
    ramps = phase.get("ramps") or {}

    def context(step: int, part: _Part) -> PhaseContext:
        progress = step / max(n_steps, 1)
        return PhaseContext(part.spec, step, n_steps, {k: ramp_value(v, progress) for k, v in ramps.items()})

    best, since_best, diverged, step = math.inf, 0, False, 0
    last_good = [p.detach().clone() for p in model.parameters()]
    for step in range(n_steps):
        value = None
        for part in parts:
            if step % part.every:
                continue
            for p in model.parameters():
                p.requires_grad_(False)
            for p in part.params:
                p.requires_grad_(True)
            lr_factor = _learning_rate_factor(part.spec, step, n_steps)
            for group in (g for optimizer in part.optimizers for g in optimizer.param_groups):
                group["lr"] = part.lr * group["lr_factor"] * lr_factor
            total, _ = weighted_losses(objective(model, context(step, part)), part.weights)
            loss = total.sum()
            if not torch.isfinite(loss):
                diverged = True
                break
            last_good = [p.detach().clone() for p in model.parameters()]
            for optimizer in part.optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if eta > 0:
                sigma = math.sqrt(eta / (1.0 + step) ** gamma)
                for p in part.params:
                    if p.grad is None:  # a trained parameter the loss does not use (e.g. an empty group)
                        continue
                    p.grad.add_(torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype), alpha=sigma)
            for optimizer in part.optimizers:
                optimizer.step()
            value = float(total.detach().min()) if value is None else value  # the first part's loss leads
        if diverged:
            break
        if on_step is not None:
            on_step(name, step, n_steps, value)
        if value < best * (1.0 - rtol):
            best, since_best = value, 0
        else:
            since_best += 1
            if patience and since_best >= patience:
                break

    if diverged:
        with torch.no_grad():
            for p, saved in zip(model.parameters(), last_good):
                p.data = saved
    with torch.no_grad():
        total, terms = weighted_losses(objective(model, context(n_steps, parts[0])), parts[0].weights)
    select = terms.get(select_by, total)
    best_seed = int(torch.nan_to_num(select, nan=math.inf).argmin()) if n_seeds > 1 else 0
    record = PhaseRecord(
        name=name,
        steps=step + 1,
        seconds=time.perf_counter() - start_time,
        final={k: float(v[best_seed]) for k, v in [("total", total), *terms.items()]},
        seed_losses=[float(v) for v in select] if n_seeds > 1 else [],
        best_seed=best_seed,
        diverged=diverged,
    )
    if n_seeds > 1:
        model.select_seed(best_seed)
    for p in model.parameters():
        p.requires_grad_(False)
    if diverged:
        raise OptimisationDiverged(f"loss became non-finite in phase {name!r} at step {step}; kept the last finite state")
    return record


@dataclass
class FitHistory:
    """A whole fit: its phases, the leading loss at every step, and a warning if it diverged."""

    phases: list[PhaseRecord]
    losses: list[float]
    warning: str | None = None


def run_phases_recorded(model: MultiStartModule, objective, phases: list[Mapping[str, Any]], weights: Mapping[str, float], seed: int = 0,
                        select_by: str = "recon_mse", on_step: Callable[[str, int, int, float], None] | None = None) -> FitHistory:
    """`run_phases` keeping every step's loss; a divergence becomes a logged warning, the model
    holding its last finite state (a method then writes what it has, flagged)."""
    losses: list[float] = []

    def record_step(phase: str, step: int, n_steps: int, loss: float) -> None:
        losses.append(loss)
        if on_step is not None:
            on_step(phase, step, n_steps, loss)

    try:
        return FitHistory(run_phases(model, objective, phases, weights, seed, select_by, record_step), losses)
    except OptimisationDiverged as err:
        logging.getLogger("invrender").warning("%s", err)
        return FitHistory([], losses, str(err))
