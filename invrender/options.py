"""The command-line options that commands share: the input arguments, the options of every method
command (`SharedOptions`, added by `@with_shared_options`), and options that several commands take
with one meaning (`--voxel-size`, a synth command's `--out` and `--seed`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

Arguments = Annotated[
    list[str],
    typer.Argument(
        help="Input files, folders, globs or input lists (.txt/.csv), then optional key=value config overrides.",
        show_default=False,
    ),
]


def parse_seed(text: str) -> int:
    """`--seed` as written: a whole number (its range is checked with the other options)."""
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a whole number (a seed is 0 to 4294967295)") from None


# Options that several commands take with the same meaning (each command sets its own default).
VoxelSize = Annotated[
    str | None,
    typer.Option("--voxel-size", help="z,y,x in physical units (mm for CT); default: from the TIFF's metadata."),
]
SynthOut = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
SynthSeed = Annotated[
    int, typer.Option("--seed", help="Random seed: the same seed writes the same data.", parser=parse_seed)
]


@dataclass
class SharedOptions:
    """The options of every method command (see `with_shared_options` for their help)."""

    out: Path = Path("invrender-out")
    device: str = "auto"
    seed: int = 0
    quiet: bool = False
    config: str = "default"
    resume: bool = False
    force: bool = False
    wait: bool = False
    threads: int | None = None
    multirun: bool = False
    num_parts: int | None = None
    part_id: int | None = None
    timeout: float | None = None


_SHARED_HELP = {
    "out": (("--out", "-o"), "Output folder (created if needed)."),
    "device": (("--device",), "auto | cpu | cuda | cuda:N"),
    "seed": (("--seed",), "Random seed: same input, config and seed give the same output."),
    "quiet": (("--quiet", "-q"), "No progress bar and no per-input lines; errors only."),
    "config": (("--config", "-c"), "Config name: configs/<method>/NAME.yaml."),
    "resume": (
        ("--resume",),
        "Skip inputs whose outputs all exist already (refused if they were made with another config or seed).",
    ),
    "force": (("--force",), "With --resume: redo the finished inputs that were made with another config or seed."),
    "wait": (("--wait",), "If another run is writing into --out, wait for it to end instead of stopping."),
    "threads": (
        ("--threads",),
        "CPU threads for torch (default: the cores this job may use, from its affinity, SLURM_CPUS_PER_TASK and "
        "cgroup quota; with -m, those cores / workers).",
    ),
    "multirun": (
        ("--multirun", "-m"),
        "Sweep: one job per combination of comma-separated override values (and per part of the inputs), run by the "
        "Hydra launcher given as hydra/launcher=NAME.",
    ),
    "num_parts": (
        ("--num-parts",),
        "Split the inputs into N parts (every N-th input). With --part-id: run one part; with -m: one job per part.",
    ),
    "part_id": (("--part-id",), "Run part K (0-based) of --num-parts."),
    "timeout": (("--timeout",), "Stop an input's job after this many seconds and record it as 'timeout'."),
}


_PARSERS = {"seed": parse_seed}


def shared_option(name: str) -> Any:
    """The typer.Option of one shared option, for commands that take only some of them."""
    flags, help_text = _SHARED_HELP[name]
    return typer.Option(*flags, help=help_text, parser=_PARSERS.get(name))


def with_shared_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a method command the shared options: Typer sees them in the signature, the command
    receives them as one `shared: SharedOptions` argument."""
    hints = get_type_hints(command, include_extras=True)  # the annotations as objects, not strings
    own = [
        p.replace(annotation=hints[p.name])
        for p in inspect.signature(command).parameters.values()
        if p.name != "shared"
    ]
    defaults, types = SharedOptions(), get_type_hints(SharedOptions)
    shared_params = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=getattr(defaults, f.name),
            annotation=Annotated[types[f.name], shared_option(f.name)],
        )
        for f in fields(SharedOptions)
    ]

    def wrapper(**kwargs: Any) -> Any:
        shared = SharedOptions(**{f.name: kwargs.pop(f.name) for f in fields(SharedOptions)})
        return command(shared=shared, **kwargs)

    wrapper.__signature__ = inspect.Signature(
        [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared_params
    )
    wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
    wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
    return wrapper
