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
               lowest `select_by` term at the end (per problem, when the model holds several
               problems side by side: see multistart.py)
    spread:    move every start but the first of each problem this far from it, each its own way
               (the model's `spread_seeds` says how and in what unit), so that the starts explore
               other basins than the noise alone reaches
    ramps:     {name: {start, end, until}}: values that move linearly from start to end over the
               first `until` fraction of the phase (e.g. a blur that fades out), passed to the
               objective through the context
    options:   free-form settings the method's objective reads (e.g. what to draw)

A phase is read into a `Phase` (`parse_phase`, also at config time by `check_phases`): a key that is
not one of the above is refused, so a misspelt setting cannot be silently ignored.

The objective is the method's forward pass: `objective(model, context) -> quantities`, the dict
that the loss registry's terms read. The model is a MultiStartModule. It may hold P independent
problems side by side (its slices when a phase starts): each gets its own starts, its own record
and its own best seed, and a stop rule follows the sum over problems of their best start's loss.

A fit diverges when its loss or a trained parameter becomes NaN or infinite, or when the method's
`bound` (see divergence.py) says a parameter has left the image; the model then gets back the state
before the step that diverged, the remaining phases are skipped, and OptimisationDiverged says why.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from invrender.core.io import finite_or_none
from invrender.core.losses import weighted_losses
from invrender.core.optim.adam_variants import AdamUniform, VectorAdam
from invrender.core.optim.divergence import Bound, OptimisationDiverged, nonfinite
from invrender.core.optim.loss_log import LossLog, StepCallback
from invrender.core.optim.multistart import MultiStartModule
from invrender.core.schema import (
    ANY,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    NUMBER,
    POSITIVE_INT,
    PROBABILITY,
    STRING,
    WEIGHTS,
    BadValue,
    Rule,
    check_keys,
    check_values,
    list_of,
    mapping_of,
    one_of,
    optional,
)

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adam_uniform": AdamUniform,
    "vector_adam": VectorAdam,
}


@dataclass
class PhaseContext:
    """What the objective may read about the running phase."""

    part: Part  # the phase, or its alternating part that is stepping
    step: int
    n_steps: int
    ramps: dict[str, float]

    def option(self, name: str, default: Any = None) -> Any:
        return self.part.options.get(name, default)


@dataclass
class PhaseRecord:
    """What happened in one phase, for the manifest (JSON: a loss that is not finite is None)."""

    name: str
    steps: int
    seconds: float  # the whole phase's, shared by the problems of a model that holds several
    final: dict[str, float | None]
    seed_losses: list[float | None] = field(default_factory=list)
    best_seed: int = 0
    diverged: bool = False


@dataclass(frozen=True)
class Part:
    """What one optimisation trains and how: a phase is one part, or alternates between several."""

    train: tuple[str, ...]
    lr: float
    name: str = "phase"
    optimizer: str = "adam"
    group_optimizers: Mapping[str, str] = field(default_factory=dict)
    lr_scale: Mapping[str, float] = field(default_factory=dict)
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    schedule: str = "constant"
    final_lr_factor: float = 0.0
    loss: Mapping[str, float] | None = None  # None: the run's loss weights
    every: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ramp:
    start: float
    end: float
    until: float = 1.0


@dataclass(frozen=True)
class Phase:
    """One entry of a config's `phases`, checked and typed (see the module's docstring)."""

    name: str
    steps: int
    parts: tuple[Part, ...]
    seeds: int = 1
    spread: float = 0.0
    patience: int = 0  # stop: {patience, rtol}
    rtol: float = 0.0
    eta: float = 0.0  # grad_noise: {eta, gamma}
    gamma: float = 0.55
    ramps: Mapping[str, Ramp] = field(default_factory=dict)


PART_KEYS = frozenset(f.name for f in fields(Part))
PHASE_KEYS = PART_KEYS | {"steps", "seeds", "spread", "stop", "grad_noise", "ramps", "alternate"}
SCHEDULES = ("constant", "cosine")

# The values a phase's keys may take (the schedule and the optimizers are checked by name below).
PHASE_RULES: dict[str, Rule] = {"steps": POSITIVE_INT, "seeds": POSITIVE_INT, "spread": NON_NEGATIVE}
STOP_RULES: dict[str, Rule] = {"patience": NON_NEGATIVE_INT, "rtol": NON_NEGATIVE}
NOISE_RULES: dict[str, Rule] = {"eta": NON_NEGATIVE, "gamma": NON_NEGATIVE}
RAMP_RULES: dict[str, Rule] = {"start": NUMBER, "end": NUMBER, "until": PROBABILITY}
PART_RULES: dict[str, Rule] = {
    "train": list_of(STRING),
    "lr": NON_NEGATIVE,  # 0: the phase only evaluates (e.g. picks the best of its seeds)
    "name": STRING,
    "lr_scale": optional(mapping_of(NON_NEGATIVE, "trained groups")),  # 0 freezes a trained group
    "final_lr_factor": NON_NEGATIVE,
    "loss": optional(WEIGHTS),  # null: the run's loss weights
    "every": POSITIVE_INT,
    "optimizer_options": ANY,  # the optimizer's keyword arguments, refused by it when wrong
    "options": ANY,  # read by the method's objective
}


def parse_phase(spec: Mapping[str, Any], where: str = "phase", groups: tuple[str, ...] | None = None) -> Phase:
    """A config's phase as a `Phase`; ValueError (naming the key under `where`, e.g. "phases.1")
    for an unknown key, a missing `steps`, `train` or `lr`, a value out of its range (BadValue), an
    unknown schedule or optimizer, or (given the model's parameter `groups`) an unknown group."""
    check_keys(spec, PHASE_KEYS, where)
    stop, noise, ramps = dict(spec.get("stop") or {}), dict(spec.get("grad_noise") or {}), dict(spec.get("ramps") or {})
    check_keys(stop, STOP_RULES, f"{where}.stop")
    check_keys(noise, NOISE_RULES, f"{where}.grad_noise")
    for ramp, values in ramps.items():
        check_keys(values, RAMP_RULES, f"{where}.ramps.{ramp}")
        if "start" not in values or "end" not in values:
            raise ValueError(f"{where}.ramps.{ramp}: needs `start` and `end`")
        check_values(values, RAMP_RULES, f"{where}.ramps.{ramp}", required=False)
    if "steps" not in spec:
        raise ValueError(f"{where}: no `steps`")
    check_values(spec, PHASE_RULES, where, required=False)
    check_values(stop, STOP_RULES, f"{where}.stop", required=False)
    check_values(noise, NOISE_RULES, f"{where}.grad_noise", required=False)
    shared = {k: v for k, v in spec.items() if k in PART_KEYS}
    alternate = spec.get("alternate")
    if alternate is not None and not (_is_list(alternate) and alternate):
        raise BadValue(f"{where}.alternate", alternate, "a non-empty list of parts")
    parts = []
    for i, part in enumerate(alternate or [{}]):
        at = f"{where}.alternate.{i}" if alternate else where
        check_keys(part, PART_KEYS, at)
        parts.append(_parse_part({**shared, **part}, at, groups))
    return Phase(
        name=str(spec.get("name", "phase")),
        steps=int(spec["steps"]),
        parts=tuple(parts),
        seeds=int(spec.get("seeds", 1)),
        spread=float(spec.get("spread", 0.0)),
        patience=int(stop.get("patience", 0)),
        rtol=float(stop.get("rtol", 0.0)),
        eta=float(noise.get("eta", 0.0)),
        gamma=float(noise.get("gamma", 0.55)),
        ramps={k: Ramp(float(v["start"]), float(v["end"]), float(v.get("until", 1.0))) for k, v in ramps.items()},
    )


def _parse_part(spec: Mapping[str, Any], where: str, groups: tuple[str, ...] | None) -> Part:
    for key in ("train", "lr"):
        if key not in spec:
            raise ValueError(f"{where}: no `{key}`")
    check_values(spec, PART_RULES, where, required=False)
    if groups is not None:  # the model's parameter groups, when the caller knows its model
        for i, group in enumerate(spec["train"]):
            one_of(*groups).check(group, f"{where}.train.{i}")
    part = Part(
        train=tuple(spec["train"]),
        lr=float(spec["lr"]),
        name=str(spec.get("name", "phase")),
        optimizer=str(spec.get("optimizer", "adam")),
        group_optimizers=dict(spec.get("group_optimizers") or {}),
        lr_scale={k: float(v) for k, v in (spec.get("lr_scale") or {}).items()},
        optimizer_options={
            k: v if isinstance(v, (int, float, str)) else tuple(v)
            for k, v in (spec.get("optimizer_options") or {}).items()
        },
        schedule=str(spec.get("schedule", "constant")),
        final_lr_factor=float(spec.get("final_lr_factor", 0.0)),
        loss=None if spec.get("loss") is None else {k: float(v) for k, v in spec["loss"].items()},
        every=int(spec.get("every", 1)),
        options=dict(spec.get("options") or {}),
    )
    if part.schedule not in SCHEDULES:
        raise ValueError(
            f"{where}.schedule: unknown learning-rate schedule {part.schedule!r}; known: {', '.join(SCHEDULES)}"
        )
    for name in (part.optimizer, *part.group_optimizers.values()):
        if name not in OPTIMIZERS:
            raise ValueError(f"{where}: unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    for key in ("lr_scale", "group_optimizers"):
        unknown = sorted(set(getattr(part, key)) - set(part.train))
        if unknown:
            raise ValueError(f"{where}.{key} names group(s) {unknown} that {part.name!r} does not train")
    return part


def _is_list(value: Any) -> bool:
    """A list, or OmegaConf's ListConfig (phases are parsed from plain configs and from DictConfigs)."""
    return isinstance(value, Sequence) and not isinstance(value, str)


def check_phases(
    phases: list[Mapping[str, Any]] | None, where: str = "phases", groups: tuple[str, ...] | None = None
) -> None:
    """`parse_phase` for each phase of a config: ValueError at the first bad one."""
    for i, phase in enumerate(phases or []):
        parse_phase(phase, f"{where}.{i}", groups)


class _Phases(Rule):
    def __init__(self, groups: tuple[str, ...]):
        super().__init__("a non-empty list of phases")
        self.groups = groups

    def check(self, value: Any, key: str) -> None:
        if not (_is_list(value) and value):
            raise BadValue(key, value, self.allowed)
        check_phases(value, key, self.groups)


def phases_rule(groups: Mapping[str, Any] | tuple[str, ...]) -> Rule:
    """The rule of a config's `phases`: a non-empty list of phases that `parse_phase` accepts, each
    training only the model's parameter `groups` (names, or a MultiStartModule's `groups` mapping)."""
    return _Phases(tuple(groups))


def ramp_value(ramp: Ramp, progress: float) -> float:
    """Linear ramp from `start` to `end` over the first `until` fraction of a phase."""
    fraction = 1.0 if ramp.until <= 0 else min(progress / ramp.until, 1.0)
    return ramp.start + (ramp.end - ramp.start) * fraction


def learning_rate_factor(part: Part, step: int, n_steps: int) -> float:
    """The schedule's factor of the learning rate at `step` (cosine: from 1 to `final_lr_factor`)."""
    if part.schedule == "cosine":
        end = part.final_lr_factor
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * step / max(n_steps, 1)))
    return 1.0


def run_phases(
    model: MultiStartModule,
    objective: Callable[[MultiStartModule, PhaseContext], Mapping[str, torch.Tensor]],
    phases: list[Mapping[str, Any]],
    weights: Mapping[str, float],
    seed: int = 0,
    select_by: str = "recon_mse",
    on_step: StepCallback | None = None,
    bound: Bound | None = None,
) -> list[PhaseRecord]:
    """Run the phases in order; returns one record per phase (per phase and problem when the model
    holds several problems: phase by phase, each phase's records in problem order).

    Raises OptimisationDiverged (after restoring the parameters of the step before, and with the
    records so far) if the loss or a trained parameter becomes non-finite, or `bound(model)` gives
    a reason after a step.
    """
    parsed = [parse_phase(phase, f"phases.{i}") for i, phase in enumerate(phases)]
    records = []
    for index, phase in enumerate(parsed):
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed * 1009 + index)
        phase_records, reason = _run_phase(model, objective, phase, weights, generator, select_by, on_step, bound)
        records += phase_records
        if reason is not None:
            where = f"in phase {phase.name!r} at step {phase_records[0].steps - 1}"
            raise OptimisationDiverged(f"{reason} {where}; kept the state before it diverged", records)
    return records


@dataclass
class _Optimisation:
    """A part's optimizers over its trained parameters."""

    part: Part
    params: list[torch.nn.Parameter]
    optimizers: list[torch.optim.Optimizer]
    weights: Mapping[str, float]


def _make_optimisation(model: MultiStartModule, part: Part, weights: Mapping[str, float]) -> _Optimisation:
    chosen = {g: part.group_optimizers.get(g, part.optimizer) for g in part.train}
    optimizers = []
    for name in dict.fromkeys(chosen.values()):  # one optimizer per distinct name, in group order
        param_groups = [
            {"params": model.parameter_groups([g]), "lr_factor": part.lr_scale.get(g, 1.0)}
            for g in part.train
            if chosen[g] == name
        ]
        param_groups = [g for g in param_groups if g["params"]]
        if param_groups:
            optimizers.append(OPTIMIZERS[name](param_groups, lr=part.lr, **part.optimizer_options))
    return _Optimisation(part, model.parameter_groups(list(part.train)), optimizers, dict(part.loss or weights))


def _diverged(model: MultiStartModule, params: list[torch.nn.Parameter], bound: Bound | None) -> str | None:
    """Why the state after a step has diverged, or None."""
    if nonfinite(params):
        return "a parameter became non-finite"
    return None if bound is None else bound(model)


def _run_phase(
    model, objective, phase: Phase, weights, generator, select_by, on_step, bound
) -> tuple[list[PhaseRecord], str | None]:
    """Run one phase: its record per problem, and why it diverged (None if it did not)."""
    start_time = time.perf_counter()
    name, n_steps, n_seeds = phase.name, phase.steps, phase.seeds
    problems = model.n_seeds  # one slice per problem until the starts are expanded
    if n_seeds > 1:
        model.expand_seeds(n_seeds)
        if phase.spread:
            model.spread_seeds(phase.spread, n_seeds, generator)
    # Alternating parts each step in turn (each with its own optimizer, trained groups, options and
    # loss weights), e.g. shape and PSF steps staggered.
    parts = [_make_optimisation(model, part, weights) for part in phase.parts]

    def context(step: int, part: _Optimisation) -> PhaseContext:
        progress = step / max(n_steps, 1)
        return PhaseContext(part.part, step, n_steps, {k: ramp_value(v, progress) for k, v in phase.ramps.items()})

    best, since_best, diverged, step = math.inf, 0, None, 0
    last_good = [p.detach().clone() for p in model.parameters()]
    for step in range(n_steps):
        value = None
        for part in parts:
            if step % part.part.every:
                continue
            for p in model.parameters():
                p.requires_grad_(False)
            for p in part.params:
                p.requires_grad_(True)
            lr_factor = learning_rate_factor(part.part, step, n_steps)
            for group in (g for optimizer in part.optimizers for g in optimizer.param_groups):
                group["lr"] = part.part.lr * group["lr_factor"] * lr_factor
            total, _ = weighted_losses(objective(model, context(step, part)), part.weights)
            loss = total.sum()
            if not torch.isfinite(loss):
                diverged = "the loss became non-finite"
                break
            last_good = [p.detach().clone() for p in model.parameters()]
            for optimizer in part.optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if phase.eta > 0:
                sigma = math.sqrt(phase.eta / (1.0 + step) ** phase.gamma)
                for p in part.params:
                    if p.grad is None:  # a trained parameter the loss does not use (e.g. an empty group)
                        continue
                    p.grad.add_(torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype), alpha=sigma)
            for optimizer in part.optimizers:
                optimizer.step()
            # Checked after the step, so that the next objective never sees a state that has diverged
            # (a NaN knot or PSF breaks the renderer itself, before any loss could say so).
            diverged = _diverged(model, part.params, bound)
            if diverged:
                break
            if value is None:  # the first part's loss leads: each problem's best start, summed
                value = float(total.detach().reshape(problems, -1).amin(1).sum())
        if diverged:
            break
        if on_step is not None:
            on_step(name, step, n_steps, value)
        if value < best * (1.0 - phase.rtol):
            best, since_best = value, 0
        else:
            since_best += 1
            if phase.patience and since_best >= phase.patience:
                break

    if diverged:
        with torch.no_grad():
            for p, saved in zip(model.parameters(), last_good):
                p.data = saved
    with torch.no_grad():
        total, terms = weighted_losses(objective(model, context(n_steps, parts[0])), parts[0].weights)
    select = terms.get(select_by, total).reshape(problems, -1)  # (problems, starts)
    best_seeds = torch.nan_to_num(select, nan=math.inf).argmin(1).tolist()  # a tie goes to the first
    seconds = time.perf_counter() - start_time
    records = []
    for problem, best_seed in enumerate(best_seeds):
        kept = problem * select.shape[1] + best_seed
        records.append(
            PhaseRecord(
                name=name,
                steps=step + 1,
                seconds=seconds,
                final={k: finite_or_none(v[kept]) for k, v in [("total", total), *terms.items()]},
                seed_losses=[finite_or_none(v) for v in select[problem]] if n_seeds > 1 else [],
                best_seed=best_seed,
                diverged=diverged is not None,
            )
        )
    if n_seeds > 1:
        model.starts_ended(select.detach(), best_seeds)
        model.select_seeds([p * n_seeds + best for p, best in enumerate(best_seeds)])
    for p in model.parameters():
        p.requires_grad_(False)
    return records, diverged


@dataclass
class FitHistory:
    """A whole fit: its phases, the leading loss at every step, and a warning if it diverged."""

    phases: list[PhaseRecord]
    losses: list[float]
    warning: str | None = None


def run_phases_recorded(
    model: MultiStartModule,
    objective,
    phases: list[Mapping[str, Any]],
    weights: Mapping[str, float],
    on_step: StepCallback | None = None,
    **options: Any,
) -> FitHistory:
    """`run_phases` (its other `options` by keyword: seed, select_by, bound) keeping every step's
    loss; a divergence becomes a logged warning, the model holding its last finite state (a method
    then writes what it has, flagged)."""
    log = LossLog(on_step)
    try:
        return FitHistory(run_phases(model, objective, phases, weights, on_step=log, **options), log.losses)
    except OptimisationDiverged as err:
        logging.getLogger("invrender").warning("%s", err)
        return FitHistory(err.records, log.losses, str(err))
