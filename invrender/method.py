"""What every method command shares: the path from arguments to finished jobs.

A method describes its configs with a `MethodConfig` (folder, checks, devices; its Python function
uses it too) and itself with a `MethodSpec` (that, and how to turn one input into a `Job`), and
writes a Typer command that takes its own options only; `options.with_shared_options` adds the
options every command has (`--out`, `--device`, `-m`, shards, ...) and hands them over as one
`SharedOptions`. The command then calls `run.run_method`, which reads the inputs, composes and
checks the config, and runs the jobs here, or as a sweep through a Hydra launcher (`launch.py`)
with `-m`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch
from omegaconf import DictConfig
from rich.console import Console

from invrender.config import ConfigError, compose_config, resolve_device, to_plain
from invrender.core.io import write_json
from invrender.cpus import job_threads
from invrender.inputs import IMAGE_SUFFIXES, InputItem, InputOption
from invrender.runner import Job, StepCallback, progress_bar


@dataclass(frozen=True)
class JobContext:
    """What a method's `make_job` needs besides the input and its config."""

    out: Path
    device: torch.device
    seed: int
    options: dict[str, Any]  # the method's own options, with per-input values from a CSV list applied


@dataclass(frozen=True)
class SizeOption:
    """A method's option of its objects' typical size in pixels, as cellpose's `--diameter`: the
    sizes in pixels of the config are set from it by `overrides(cfg, size)`, config overrides
    computed from the config it is given (so that they follow a preset's and the user's values)."""

    name: str  # the command line's `--<name>` and the Python API's keyword
    help: str
    overrides: Callable[[DictConfig, float], list[str]]

    def checked(self, size: Any, flag: str = "") -> float:
        """`size` as a float if it is a positive finite number; ConfigError naming the option
        (`flag` + name: "--" on the command line) otherwise."""
        number = isinstance(size, int | float) and not isinstance(size, bool)
        if not (number and math.isfinite(size) and size > 0):
            shown = f"{size:g}" if number else repr(size)
            raise ConfigError(f"{flag}{self.name} {shown}: must be a positive number of pixels")
        return float(size)


@dataclass(frozen=True)
class MethodConfig:
    """A method's configs and devices, checked the same way by its command and its Python function."""

    name: str  # the command, e.g. "spline-refine"
    config_dir: str  # configs/<config_dir>/NAME.yaml
    check: Callable[[DictConfig, torch.device], None] | None = None  # raises ConfigError
    cpu_only: bool = False  # `auto` means the CPU, and an explicit cuda is refused
    renderer_kind: str | None = None  # the kind of renderer `render.backend` names (core/render/registry.KINDS)
    quantities: frozenset[str] | None = None  # what its objective gives the loss registry (config `loss` is checked)
    size: SizeOption | None = None  # its option of the objects' size in pixels, if it has one

    def device(self, option: str | torch.device) -> torch.device:
        """`--device` resolved; a CPU-only method stays on the CPU with `auto` (so that its default
        works on a GPU node too) and refuses cuda. ConfigError otherwise."""
        option = str(option)
        if self.cpu_only and option.strip().lower() == "auto":
            return torch.device("cpu")
        device = resolve_device(option)
        if self.cpu_only and device.type != "cpu":
            raise ConfigError(f"--device {device}: {self.name} runs on the CPU for now")
        return device

    def compose(self, name: str, overrides: Sequence[str], device: torch.device) -> DictConfig:
        """configs/<config_dir>/`name`.yaml with `overrides`, checked (renderer, losses, values) for
        `device`; ConfigError otherwise."""
        cfg = compose_config(self.config_dir, name, list(overrides))
        if self.renderer_kind is not None:
            config_renderer(cfg, device, self.renderer_kind)
        if self.quantities is not None:
            check_losses(cfg, self.quantities)
        if self.check is not None:
            self.check(cfg, device)
        return cfg

    def resolve(
        self, name: str, overrides: Sequence[str], device: str | torch.device, size: Any = None
    ) -> tuple[DictConfig, torch.device]:
        """The Python API's config and device: `name` with `overrides`, checked for `device`; with
        `size` (the value of the API's keyword `self.size.name`, None if not given) the config's
        sizes in pixels set from it."""
        check_api_overrides(overrides)
        resolved = self.device(device)
        cfg = self.compose(name, overrides, resolved)
        if size is not None:
            sized = self.size.overrides(cfg, self.size.checked(size))
            cfg = self.compose(name, [*overrides, *sized], resolved)
        return cfg, resolved


def check_api_overrides(overrides: Sequence[str]) -> None:
    """ConfigError for the Python API's likely slip: one string where a list of them is expected."""
    if isinstance(overrides, str):
        raise ConfigError(f"overrides={overrides!r}: give a list of key=value strings")


@dataclass(frozen=True)
class MethodSpec:
    """A method as the batch machinery sees it: its configs, and how one input becomes a `Job`."""

    config: MethodConfig
    make_job: Callable[[InputItem, DictConfig, JobContext], Job]
    check_inputs: Callable[[list[InputItem], dict[str, Any]], None] | None = None  # raises ConfigError
    input_suffixes: tuple[str, ...] = IMAGE_SUFFIXES
    input_options: dict[str, InputOption] = field(default_factory=dict)  # `with_shared_options` adds them
    keep_folders: bool = False  # a folder is one input (a time-lapse), not a list of files

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class ConfigCache:
    """Composes (and checks) each distinct list of overrides once."""

    spec: MethodSpec
    name: str
    device: torch.device
    configs: dict[tuple[str, ...], DictConfig] = field(default_factory=dict)

    def get(self, overrides: tuple[str, ...], where: str = "") -> DictConfig:
        if overrides not in self.configs:
            try:
                cfg = self.spec.config.compose(self.name, overrides, self.device)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}" if where else str(err)) from None
            self.configs[overrides] = cfg
        return self.configs[overrides]


class RunOptions(TypedDict, total=False):
    """The keywords of every method's Python function besides its own (its `**run`), as the
    command line's shared options:

    config: a preset of the method's config folder (`--config`), default "default";
    overrides: `key=value` config overrides, as the command line's trailing arguments;
    device: "auto" (the default), "cpu", "cuda", "cuda:1" or a `torch.device` (`--device`);
    seed: the random seed (`--seed`), default 0;
    progress: a `(phase, step, steps, loss)` callback, True for a progress bar on stderr, or None
    (the default: silent).
    """

    config: str
    overrides: Sequence[str]
    device: str | torch.device
    seed: int
    progress: bool | StepCallback | None


RUN_DEFAULTS: RunOptions = {"config": "default", "overrides": (), "device": "auto", "seed": 0, "progress": None}


def run_options(function: str, run: Mapping[str, Any]) -> RunOptions:
    """An API function's `**run` with the defaults of the keys not given. A key that is not a run
    option raises TypeError, as Python does for an unknown keyword (a misspelt `sed=1` would
    otherwise be ignored)."""
    for key in run:
        if key not in RUN_DEFAULTS:
            raise TypeError(f"{function}() got an unexpected keyword argument {key!r}")
    return {**RUN_DEFAULTS, **run}


@contextmanager
def api_steps(progress: bool | StepCallback | None) -> Iterator[StepCallback | None]:
    """The Python API's step callback: none (silent, the default), the caller's own
    `(phase, step, steps, loss)` function, or with `True` a progress bar on stderr. The fits seed
    torch's generator (for `seed`); the caller's random state is restored afterwards."""
    with torch.random.fork_rng():
        if not progress:
            yield None
        elif callable(progress):
            yield progress
        else:
            with progress_bar(Console(stderr=True)) as bar:
                task = bar.add_task("", total=1)

                def show_step(phase: str, step: int, steps: int, loss: float) -> None:
                    description = phase if math.isnan(loss) else f"{phase} loss {loss:.3g}"
                    bar.update(task, description=description, completed=step + 1, total=steps)

                yield show_step


def check_losses(cfg: DictConfig, produced: frozenset[str]) -> None:
    """Known losses with numeric weights that read only quantities the method `produced`, the run's
    and each alternating phase part's; ConfigError otherwise."""
    from invrender.core.losses import check_weights

    try:
        check_weights(cfg.loss, produced)
        for phase in cfg.get("phases") or []:
            for part in phase.get("alternate") or []:
                check_weights(part.get("loss") or {}, produced)
    except ValueError as err:
        raise ConfigError(f"config loss: {err}") from None


def config_renderer(cfg: DictConfig, device: torch.device, kind: str):
    """The renderer of `kind` that `cfg.render.backend` names (or `auto`) on `device`; ConfigError
    (listing the backends of the kind) when it is of another kind, unknown, or cannot run here."""
    from invrender.core.render.registry import RendererUnavailable, get_renderer

    try:
        return get_renderer(cfg.render.backend, device, kind)
    except RendererUnavailable as err:
        raise ConfigError(f"config render.backend: {err}") from None


def make_jobs(
    spec: MethodSpec, items: list[InputItem], overrides: list[str], configs: ConfigCache, context: JobContext
) -> list[Job]:
    """One job per input, each with its config (the run's overrides, then the input's own)."""
    jobs = []
    for item in items:
        for override in item.overrides:
            if override_key(override).startswith("hydra"):
                raise ConfigError(
                    f"{item.source}: column {override.split('=', 1)[0]}: Hydra's settings are not set per input "
                    "(give them on the command line, with -m)"
                )
        cfg = configs.get(tuple(overrides) + item.overrides, item.source)
        item_context = JobContext(context.out, context.device, context.seed, {**context.options, **item.options})
        job = spec.make_job(item, cfg, item_context)
        job.overrides = item.overrides
        job.config_hash = config_hash(cfg, item_context.options, context.seed)
        jobs.append(job)
    return jobs


def config_hash(cfg: DictConfig, options: dict[str, Any], seed: int) -> str:
    """A short hash of what makes a job's outputs besides its input: the config, the method's
    options and the seed (`--resume` compares it with the finished job's)."""
    made_of = {"config": to_plain(cfg), "options": {key: str(value) for key, value in options.items()}, "seed": seed}
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]


def override_key(override: str) -> str:
    """The key of a `key=value` override, without Hydra's `+` / `~` prefixes."""
    return override.split("=", 1)[0].lstrip("+~")


def check_distinct_outputs(jobs: list[Job]) -> None:
    """Two inputs with the same name in different folders would overwrite each other's outputs."""
    owner: dict[Path, str] = {}
    for job in jobs:
        for path in job.outputs:
            if owner.setdefault(path, job.name) != job.name:
                raise ConfigError(
                    f"{path}: inputs {owner[path]} and {job.name} would both write it; rename one or run them into "
                    "different --out folders"
                )


def check_threads(threads: int | None) -> int | None:
    """`--threads`: torch's CPU threads, from 1 to this machine's CPU count (more never helps, and
    tens of thousands crash OpenMP); ConfigError otherwise. None: torch's choice."""
    limit = os.cpu_count() or 1
    if threads is not None and not 1 <= threads <= limit:
        raise ConfigError(f"--threads {threads}: must be from 1 to {limit} (the CPUs of this machine)")
    return threads


def set_threads(threads: int | None) -> None:
    """Torch threads for a command that computes in its own process: `--threads` (checked as in
    `check_threads`), else the cores this process may use."""
    torch.set_num_threads(job_threads(check_threads(threads)).cores)


def check_timeout(seconds: float | None) -> None:
    """`--timeout`: positive finite seconds, or None for no limit; ConfigError otherwise (`nan` and
    `inf` parse as floats, and NaN fails every comparison, so it is refused by being not in range)."""
    if seconds is not None and not 0 < seconds < float("inf"):
        raise ConfigError(f"--timeout {seconds:g}: must be a positive, finite number of seconds")


def check_seed(seed: int) -> None:
    """`--seed`: an integer that numpy's and torch's generators both take (0 to 2**32 - 1);
    ConfigError otherwise (Typer parses any integer, and torch fails on one beyond 64 bits)."""
    from invrender.core.schema import SEED, BadValue

    try:
        SEED.check(seed, "--seed")
    except BadValue as err:
        raise ConfigError(str(err)) from None


def finish_fit(paths: dict[str, Path], metrics: dict, result: dict, phases: list, warning: str | None) -> dict:
    """Write a fit's `metrics` to `paths["metrics"]` and return its job result: the output files,
    `result`'s fields and the phases (dataclasses, as dicts). The fit's warning goes into both."""
    if warning:
        metrics["warning"] = warning
    write_json(paths["metrics"], metrics)
    job_result = {"outputs": [str(p) for p in paths.values()], **result, "phases": [p.__dict__ for p in phases]}
    if warning:
        job_result["warning"] = warning
    return job_result
