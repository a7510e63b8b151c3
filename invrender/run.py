"""Run a method command: its arguments -> inputs -> checked configs -> jobs, run here by the
`Runner`, or with `-m` as a sweep through a Hydra launcher (`launch.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from invrender.config import ConfigError, to_plain
from invrender.cpus import threads_record
from invrender.inputs import InputItem, expand_inputs, select_part, split_arguments
from invrender.isolation import forks_jobs, prepare_parent
from invrender.launch import run_sweep
from invrender.method import (
    ConfigCache,
    JobContext,
    MethodConfig,
    MethodSpec,
    check_distinct_outputs,
    check_seed,
    check_threads,
    check_timeout,
    make_jobs,
    override_key,
)
from invrender.options import CommandRun, SharedOptions
from invrender.outdir import check_out_folder, run_lock
from invrender.record import recorded_outputs
from invrender.runner import Runner


def run_method(spec: MethodSpec, arguments: list[str], run: CommandRun, options: dict | None = None) -> int:
    """Run a method command: inputs -> config -> jobs -> runner (or a launcher with -m); the exit code.

    `run` holds what `with_shared_options` generated: the shared options, the image-reading and
    per-input options, the size, and the config overrides of the options that set a config value
    (they win over the trailing ones). `options` are the command's own options that its `make_job`
    reads, besides those in `run`.
    """
    shared, size, overrides = run.shared, run.size, run.overrides
    inputs, user_overrides = split_arguments(arguments)
    if not inputs:
        raise ConfigError("ARGUMENTS: no input given, only key=value config overrides")
    check_shard_options(shared)
    device = spec.config.device(shared.device)
    check_threads(shared.threads)
    prepare_parent()  # before anything is computed here: the jobs may run in forked children
    check_timeout(shared.timeout)
    check_seed(shared.seed)
    check_out_folder(shared.out)
    if shared.force and not shared.resume:
        raise ConfigError("--force: goes with --resume (without --resume every input is done again anyway)")
    if size is not None:
        size_option, size = spec.config.size, spec.config.size.checked(size, "--")
        overrides = [
            *overrides,
            *size_option.overrides(command_config(spec.config, arguments, shared, overrides), size),
        ]
    options = {**(options or {}), **run.options}
    option_types = {name: option.type for name, option in spec.input_options.items()}
    items = drop_earlier_outputs(
        expand_inputs(inputs, spec.input_suffixes, option_types, spec.keep_folders), shared.out
    )
    if not items:
        raise ConfigError(f"{' '.join(inputs)}: no input files (looked for {', '.join(spec.input_suffixes)})")
    if spec.check_inputs is not None:
        spec.check_inputs(items, options)
    all_overrides = [*user_overrides, *overrides]
    configs = ConfigCache(spec, shared.config, device)
    if shared.multirun:
        with run_lock(shared.out, wait=shared.wait):
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
        **threads_record(shared.threads),
        "part": None if shared.num_parts is None else {"id": shared.part_id, "of": shared.num_parts},
    }
    runner = Runner(
        shared.out / manifest_name,
        run_info,
        resume=shared.resume,
        quiet=shared.quiet,
        timeout=shared.timeout,
        threads=shared.threads,
        fork=forks_jobs(device),
        force=shared.force,
    )
    with run_lock(shared.out, shard=shared.num_parts is not None, wait=shared.wait):
        return runner.run(jobs)


def command_config(
    config: MethodConfig, arguments: list[str], shared: SharedOptions, overrides: Sequence[str] = ()
) -> DictConfig:
    """The config a command's run starts from (`--config` with the trailing overrides, then the
    method's own `overrides`, checked), for the size option, which sets config values from others
    (`MethodConfig.size`). Sweeps and launcher settings (with -m) are left out: the size scales the
    config's own value of a swept key."""
    given = [o for o in split_arguments(arguments)[1] if not (override_key(o).startswith("hydra") or is_sweep(o))]
    return config.compose(shared.config, [*given, *overrides], config.device(shared.device))


def drop_earlier_outputs(items: list[InputItem], out: Path) -> list[InputItem]:
    """The inputs without the files that an earlier run recorded as its outputs in `out` (a folder
    given both as input and as --out would otherwise feed a run its own renders)."""
    outputs = recorded_outputs(out)
    return [item for item in items if item.path.resolve() not in outputs]


def check_shard_options(shared: SharedOptions) -> None:
    if shared.num_parts is not None and shared.num_parts < 1:
        raise ConfigError(f"--num-parts {shared.num_parts}: must be at least 1")
    if shared.part_id is not None:
        if shared.num_parts is None:
            raise ConfigError("--part-id: needs --num-parts")
        if not 0 <= shared.part_id < shared.num_parts:
            raise ConfigError(
                f"--part-id {shared.part_id}: must be in 0..{shared.num_parts - 1} for --num-parts {shared.num_parts}"
            )
        if shared.multirun:
            raise ConfigError(
                "--part-id: runs one part in this process; with -m, --num-parts alone sets the number of jobs"
            )
    elif shared.num_parts is not None and not shared.multirun:
        raise ConfigError("--num-parts: needs --part-id (run one part here) or -m (one job per part)")


def refuse_sweep_overrides(overrides: list[str]) -> None:
    """Without -m, a sweep (`a=1,2`) or a launcher setting (`hydra/...`) is a usage error."""
    for override in overrides:
        if override_key(override).startswith("hydra"):
            raise ConfigError(f"{override}: Hydra launcher settings need -m (--multirun)")
        if is_sweep(override):
            raise ConfigError(f"{override}: a sweep; add -m (--multirun) to run one job per value")


def is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except Exception:  # a malformed override is reported by the config composition
        return False
