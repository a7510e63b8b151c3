"""What every method command shares: its options, and the path from arguments to finished jobs.

A method describes itself with a `MethodSpec` (its config folder, how to turn one input into a
`Job`, how to check a config) and writes a Typer command that takes its own options only;
`@with_shared_options` adds the options every command has (`--out`, `--device`, `-m`, shards, ...)
and hands them over as one `SharedOptions`. The command then calls `run_method`, which reads the
inputs, composes and checks the config, and runs the jobs here, or as a sweep through a Hydra
launcher (`launch.py`) with `-m`.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, get_type_hints

import torch
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError, compose_config, resolve_device, to_plain
from invrender.inputs import IMAGE_SUFFIXES, InputItem, expand_inputs, select_part, split_arguments
from invrender.runner import Job, Runner

Arguments = Annotated[list[str], typer.Argument(help="Input files, folders, globs or input lists (.txt/.csv), then optional key=value config overrides.", show_default=False)]


@dataclass
class SharedOptions:
    """The options of every method command (see `with_shared_options` for their help)."""

    out: Path = Path("invrender-out")
    device: str = "auto"
    seed: int = 0
    quiet: bool = False
    config: str = "default"
    resume: bool = False
    threads: Optional[int] = None
    multirun: bool = False
    num_parts: Optional[int] = None
    part_id: Optional[int] = None
    timeout: Optional[float] = None


_SHARED_HELP = {
    "out": (("--out", "-o"), "Output folder (created if needed)."),
    "device": (("--device",), "auto | cpu | cuda | cuda:N"),
    "seed": (("--seed",), "Random seed: same input, config and seed give the same output."),
    "quiet": (("--quiet", "-q"), "No progress bar and no per-input lines; errors only."),
    "config": (("--config", "-c"), "Config name: configs/<method>/NAME.yaml."),
    "resume": (("--resume",), "Skip inputs whose outputs all exist already."),
    "threads": (("--threads",), "CPU threads for torch (default: torch's choice; with -m, cores / workers)."),
    "multirun": (("--multirun", "-m"), "Sweep: one job per combination of comma-separated override values (and per part of the inputs), run by the Hydra launcher given as hydra/launcher=NAME."),
    "num_parts": (("--num-parts",), "Split the inputs into N parts (every N-th input). With --part-id: run one part; with -m: one job per part."),
    "part_id": (("--part-id",), "Run part K (0-based) of --num-parts."),
    "timeout": (("--timeout",), "Stop an input's job after this many seconds and record it as 'timeout'."),
}


def shared_option(name: str) -> Any:
    """The typer.Option of one shared option, for commands that take only some of them."""
    flags, help_text = _SHARED_HELP[name]
    return typer.Option(*flags, help=help_text)


def with_shared_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a method command the shared options: Typer sees them in the signature, the command
    receives them as one `shared: SharedOptions` argument."""
    hints = get_type_hints(command, include_extras=True)  # the annotations as objects, not strings
    own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values() if p.name != "shared"]
    defaults, types = SharedOptions(), get_type_hints(SharedOptions)
    shared_params = [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=getattr(defaults, f.name),
            annotation=Annotated[types[f.name], shared_option(f.name)],
        )
        for f in fields(SharedOptions)
    ]

    def wrapper(**kwargs: Any) -> Any:
        shared = SharedOptions(**{f.name: kwargs.pop(f.name) for f in fields(SharedOptions)})
        return command(shared=shared, **kwargs)

    wrapper.__signature__ = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared_params)
    wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
    wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
    return wrapper


@dataclass(frozen=True)
class JobContext:
    """What a method's `make_job` needs besides the input and its config."""

    out: Path
    device: torch.device
    seed: int
    options: dict[str, Any]  # the method's own options, with per-input values from a CSV list applied


@dataclass(frozen=True)
class MethodSpec:
    """A method as the batch machinery sees it."""

    name: str  # the command, e.g. "spline-refine"
    config_dir: str  # configs/<config_dir>/NAME.yaml
    make_job: Callable[[InputItem, DictConfig, JobContext], Job]
    check_config: Callable[[DictConfig, torch.device], None] | None = None  # raises ConfigError
    check_inputs: Callable[[list[InputItem], dict[str, Any]], None] | None = None  # raises ConfigError
    input_suffixes: tuple[str, ...] = IMAGE_SUFFIXES
    input_options: dict[str, type] = field(default_factory=dict)  # options a CSV input list may set per input
    keep_folders: bool = False  # a folder is one input (a time-lapse), not a list of files
    cpu_only: bool = False  # `--device auto` means the CPU, and an explicit cuda is refused


def method_device(spec: MethodSpec, option: str) -> torch.device:
    """The device of a run: `--device` resolved; a CPU-only method stays on the CPU with `auto` (so
    that its default works on a GPU node too) and refuses cuda. ConfigError otherwise."""
    if spec.cpu_only and option.strip().lower() == "auto":
        return torch.device("cpu")
    device = resolve_device(option)
    if spec.cpu_only and device.type != "cpu":
        raise ConfigError(f"{spec.name} runs on the CPU for now (asked for {device})")
    return device


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
                cfg = compose_config(self.spec.config_dir, self.name, list(overrides))
                if self.spec.check_config is not None:
                    self.spec.check_config(cfg, self.device)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}" if where else str(err)) from None
            self.configs[overrides] = cfg
        return self.configs[overrides]


def run_method(spec: MethodSpec, arguments: list[str], shared: SharedOptions, overrides: list[str] = (), options: dict[str, Any] | None = None) -> int:
    """Run a method command: inputs -> config -> jobs -> runner (or a launcher with -m); the exit code.

    `overrides` are config overrides from the method's own options (they win over the trailing
    ones); `options` are the method's own options that its `make_job` reads.
    """
    inputs, user_overrides = split_arguments(arguments)
    if not inputs:
        raise ConfigError("no input given")
    check_shard_options(shared)
    device = method_device(spec, shared.device)
    if shared.threads is not None:
        if shared.threads < 1:
            raise ConfigError(f"--threads {shared.threads}: must be at least 1")
        torch.set_num_threads(shared.threads)
    if shared.timeout is not None and shared.timeout <= 0:
        raise ConfigError(f"--timeout {shared.timeout:g}: must be positive")
    options = options or {}
    items = expand_inputs(inputs, spec.input_suffixes, spec.input_options, spec.keep_folders)
    if not items:
        raise ConfigError(f"no input files in {' '.join(inputs)} (looked for {', '.join(spec.input_suffixes)})")
    if spec.check_inputs is not None:
        spec.check_inputs(items, options)
    all_overrides = [*user_overrides, *overrides]
    configs = ConfigCache(spec, shared.config, device)
    if shared.multirun:
        from invrender.launch import run_sweep

        return run_sweep(spec, items, all_overrides, shared, options, configs)
    refuse_sweep_overrides(all_overrides)
    base = configs.get(tuple(all_overrides))
    jobs = make_jobs(spec, items, all_overrides, configs, JobContext(shared.out, device, shared.seed, options))
    check_distinct_outputs(jobs)
    manifest_name = "manifest.json"
    if shared.num_parts is not None:
        jobs = select_part(jobs, shared.num_parts, shared.part_id)
        manifest_name = f"manifest.part-{shared.part_id}-of-{shared.num_parts}.json"
    run_info = {
        "method": spec.name,
        "config_name": shared.config,
        "overrides": all_overrides,
        "config": to_plain(base),
        "device": str(device),
        "seed": shared.seed,
        "torch_threads": torch.get_num_threads(),
        "part": None if shared.num_parts is None else {"id": shared.part_id, "of": shared.num_parts},
    }
    runner = Runner(shared.out / manifest_name, run_info, resume=shared.resume, quiet=shared.quiet, timeout=shared.timeout)
    return runner.run(jobs)


def check_losses(cfg: DictConfig) -> None:
    """Known losses with numeric weights, the run's and each alternating phase part's; ConfigError
    otherwise."""
    from invrender.core.losses import check_weights

    try:
        check_weights(cfg.loss)
        for phase in cfg.get("phases") or []:
            for part in phase.get("alternate") or []:
                check_weights(part.get("loss") or {})
    except ValueError as err:
        raise ConfigError(f"config loss: {err}") from None


def check_losses_and_renderer(cfg: DictConfig, device: torch.device) -> None:
    """The checks every rendering method's config needs: `check_losses` and a renderer backend
    that runs here. ConfigError otherwise."""
    from invrender.core.render.registry import RendererUnavailable, get_renderer

    check_losses(cfg)
    try:
        get_renderer(cfg.render.backend, device)
    except RendererUnavailable as err:
        raise ConfigError(f"config render.backend: {err}") from None


def config_polygon_renderer(cfg: DictConfig, device: torch.device):
    """The polygon renderer that `cfg.render.backend` names (auto | torch | nvdiffrast) on `device`;
    ConfigError when it cannot run here."""
    from invrender.core.render.polygon2d import polygon_renderer
    from invrender.core.render.registry import RendererUnavailable

    try:
        return polygon_renderer(cfg.render.backend, device)
    except RendererUnavailable as err:
        raise ConfigError(f"config render.backend: {err}") from None


def make_jobs(spec: MethodSpec, items: list[InputItem], overrides: list[str], configs: ConfigCache, context: JobContext) -> list[Job]:
    """One job per input, each with its config (the run's overrides, then the input's own)."""
    jobs = []
    for item in items:
        cfg = configs.get(tuple(overrides) + item.overrides, item.source)
        item_context = JobContext(context.out, context.device, context.seed, {**context.options, **item.options})
        job = spec.make_job(item, cfg, item_context)
        job.overrides = item.overrides
        jobs.append(job)
    return jobs


def check_shard_options(shared: SharedOptions) -> None:
    if shared.num_parts is not None and shared.num_parts < 1:
        raise ConfigError(f"--num-parts {shared.num_parts}: must be at least 1")
    if shared.part_id is not None:
        if shared.num_parts is None:
            raise ConfigError("--part-id needs --num-parts")
        if not 0 <= shared.part_id < shared.num_parts:
            raise ConfigError(f"--part-id {shared.part_id}: must be in 0..{shared.num_parts - 1} for --num-parts {shared.num_parts}")
        if shared.multirun:
            raise ConfigError("--part-id runs one part in this process; with -m, --num-parts alone sets the number of jobs")
    elif shared.num_parts is not None and not shared.multirun:
        raise ConfigError("--num-parts needs --part-id (run one part here) or -m (one job per part)")


def refuse_sweep_overrides(overrides: list[str]) -> None:
    """Without -m, a sweep (`a=1,2`) or a launcher setting (`hydra/...`) is a usage error."""
    for override in overrides:
        if override_key(override).startswith("hydra"):
            raise ConfigError(f"{override}: Hydra launcher settings need -m (--multirun)")
        if is_sweep(override):
            raise ConfigError(f"{override} is a sweep: add -m (--multirun) to run one job per value")


def override_key(override: str) -> str:
    """The key of a `key=value` override, without Hydra's `+` / `~` prefixes."""
    return override.split("=", 1)[0].lstrip("+~")


def is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except Exception:  # a malformed override is reported by the config composition
        return False


def check_distinct_outputs(jobs: list[Job]) -> None:
    """Two inputs with the same name in different folders would overwrite each other's outputs."""
    owner: dict[Path, str] = {}
    for job in jobs:
        for path in job.outputs:
            if owner.setdefault(path, job.name) != job.name:
                raise ConfigError(f"inputs {owner[path]} and {job.name} would both write {path}: rename one or run them into different --out folders")


def cores() -> int:
    """CPU cores this process may use (the affinity mask, e.g. a SLURM allocation)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
