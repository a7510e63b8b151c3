"""The command-line options that commands share: the input arguments, the options of every method
command (`SharedOptions`, added by `@with_shared_options`), the image-reading options (`--channel`,
`--axes`, `--pixel-size`, `--voxel-size`: `with_shared_options(..., reading=...)`), a method's size
option (`MethodConfig.size`, e.g. `--diameter`), and a synth command's `--out` and `--seed`."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer

from invrender.config import ConfigError

if TYPE_CHECKING:
    from invrender.inputs import InputOption
    from invrender.method import MethodConfig

Arguments = Annotated[
    list[str],
    typer.Argument(
        help="Input files, folders, globs or input lists (.txt/.csv), then optional key=value config overrides.",
        show_default=False,
    ),
]


def parse_seed(text: str) -> int:
    """`--seed` as written: a whole number that numpy's and torch's generators take (`check_seed`:
    0 to 2**32 - 1; ConfigError otherwise), for every command that takes one (a synth command's too)."""
    from invrender.method import check_seed

    try:
        seed = int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a whole number (a seed is 0 to 4294967295)") from None
    check_seed(seed)
    return seed


#: A synth command's `--seed` (each command sets its own default).
SynthSeed = Annotated[
    int, typer.Option("--seed", help="Random seed: the same seed writes the same data.", parser=parse_seed)
]

# Options of the commands that read images (each command takes those it names in
# `with_shared_options(..., reading=...)`): which channel, which axes, how large a pixel or voxel is.
Channel = Annotated[
    int | None,
    typer.Option(
        "--channel",
        help="The channel (0-based) of a multi-channel image to use: ImageJ's or OME's C axis, or a colour "
        "sample; a multi-channel image without it is refused.",
    ),
]
ImageAxes = Annotated[
    str | None,
    typer.Option(
        "--axes",
        help="The image's axes, when its file does not name them (a plain 3D array) or names them wrongly: "
        "one letter per axis of more than one pixel, of T (time), Z (depth), C (channel), S (colour), Y, X; "
        "e.g. TYX for a time-lapse, ZYX for a z-stack.",
    ),
]
PixelSize = Annotated[
    str | None,
    typer.Option(
        "--pixel-size",
        help="A pixel's size in physical units: y,x or one number for square pixels; default: from the TIFF's "
        "metadata (OME, or ImageJ's calibration), with its unit. Recorded in the manifest.",
    ),
]
VoxelSize = Annotated[
    str | None,
    typer.Option(
        "--voxel-size",
        help="z,y,x: micrometres for a microscope stack, mm for a CT; default: the file's, in the unit it records.",
    ),
]

#: The letters `--axes` may hold (tifffile's names of axes).
AXIS_LETTERS = "TZCSYX"


def check_channel(channel: int | None) -> int | None:
    """`--channel` checked: None or 0 or more; ConfigError otherwise."""
    if channel is not None and channel < 0:
        raise ConfigError(f"--channel {channel}: must be 0 or more (channels are counted from 0)")
    return channel


def check_axes(axes: str | None) -> str | None:
    """`--axes` checked and upper-cased; ConfigError for other letters than AXIS_LETTERS, a letter
    twice, or no Y and X."""
    if axes is None:
        return None
    letters = axes.upper()
    if not set(letters) <= set(AXIS_LETTERS) or len(set(letters)) != len(letters) or not {"Y", "X"} <= set(letters):
        raise ConfigError(
            f"--axes {axes}: one letter per axis, each once, of {', '.join(AXIS_LETTERS)}, with Y and X (e.g. TYX)"
        )
    return letters


def parse_pixel_size(text: str | None) -> tuple[float, float] | None:
    """`--pixel-size y,x` (or one number for both) as two positive floats; None when not given;
    ConfigError otherwise."""
    return _positive_sizes(text, "--pixel-size", "y,x", one_for_all=True)


def parse_voxel_size(text: str | None) -> tuple[float, float, float] | None:
    """`--voxel-size z,y,x` as three positive floats; None when not given; ConfigError otherwise."""
    return _positive_sizes(text, "--voxel-size", "z,y,x", one_for_all=False)


def _positive_sizes(text: str | None, option: str, axes: str, one_for_all: bool) -> tuple[float, ...] | None:
    """Comma-separated positive finite sizes, one per axis of `axes` ("z,y,x"), or with
    `one_for_all` one number for every axis."""
    if text is None:
        return None
    count = len(axes.split(","))
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if one_for_all and len(values) == 1:
        values = values * count
    if len(values) != count or not all(math.isfinite(v) and v > 0 for v in values):
        expected = f"one positive number, or {count} ({axes})" if one_for_all else f"{count} positive numbers {axes}"
        raise ConfigError(f"{option} {text!r}: expected {expected}")
    return values


#: The image-reading options: each one's Typer annotation and its check, whose value the jobs read
#: from their options under the option's name (`core.io.read_axes_image` takes `channel` and `axes`).
READING_OPTIONS: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "channel": (Channel, check_channel),
    "axes": (ImageAxes, check_axes),
    "pixel_size": (PixelSize, parse_pixel_size),
    "voxel_size": (VoxelSize, parse_voxel_size),
}


@dataclass
class SharedOptions:
    """The options of every method command (see `with_shared_options` for their help)."""

    out: Path | None = None  # the option's callback makes None `<command>-out` (see `out_folder`)
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


@dataclass(frozen=True)
class CommandRun:
    """What `with_shared_options` hands a method command besides its own options, for `run_method`."""

    shared: SharedOptions
    options: dict[str, Any]  # its image-reading options, checked, and per-input options, by name: for its jobs
    size: float | None = None  # the value of its size option (`MethodConfig.size`), None if not given
    overrides: list[str] = field(default_factory=list)  # from its options that set a config value (`ConfigOption`)


_SHARED_HELP = {
    "out": (("--out", "-o"), "Output folder, created if needed (default: <command>-out in the working folder)."),
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


def out_folder(ctx, value: Path | None) -> Path:
    """`--out` as given, else `<command>-out` in the working folder: one rule for every command that
    writes (`spline-refine-out`, `acdr-train-out`, `synth-cells-out`). Checked before anything is
    read or computed: ConfigError unless it is, or can be made, a folder this process may write into."""
    from invrender.outdir import check_out_folder

    out = value if value is not None else Path("-".join(ctx.command_path.split()[1:]) + "-out")
    check_out_folder(out)
    return out


def presets_help(config_dir: str) -> str:
    """The presets of a method, for its `--config` help: the names of configs/<config_dir>/*.yaml."""
    from invrender.config import available_configs

    return f"Presets: {', '.join(available_configs(config_dir))}."


_PARSERS = {"seed": parse_seed}
_CALLBACKS = {"out": out_folder}


def shared_option(name: str, config_dir: str | None = None) -> Any:
    """The typer.Option of one shared option, for commands that take only some of them; `--config`
    lists the presets in `config_dir` (configs/<config_dir>/)."""
    flags, help_text = _SHARED_HELP[name]
    if name == "config" and config_dir is not None:
        help_text = f"{help_text} {presets_help(config_dir)}"
    return typer.Option(
        *flags, help=help_text, parser=_PARSERS.get(name), callback=_CALLBACKS.get(name), show_default=name != "out"
    )


#: `--out` of a command that takes it alone of the shared options (a synth command, spine-template).
OutFolder = Annotated[Path | None, shared_option("out")]
SynthOut = OutFolder


@dataclass(frozen=True)
class ConfigOption:
    """A method command's option that sets one config value: `--method X` is the override
    `method='X'`, a flag (`type` bool) `--propagate` the override `video.propagate=true`. Not
    given, the config's value (a preset's, or a trailing override's) stands."""

    key: str  # the config key it sets
    type: type  # str, float, int or bool (a flag)
    help: str
    choices: tuple[str, ...] = ()  # the values it takes, checked at once (none: the config's schema checks)

    def overrides(self, name: str, value: Any) -> list[str]:
        """The config override for the option's value (none if it was not given); ConfigError
        naming the option for a value not among `choices`."""
        if value is None or value is False:
            return []
        if self.choices and value not in self.choices:
            raise ConfigError(f"{flag(name)} {value!r}: expected one of {', '.join(self.choices)}")
        if value is True:
            return [f"{self.key}=true"]
        # Text quoted: Hydra would read a bare 2 as a number.
        return [f"{self.key}='{value}'" if self.type is str else f"{self.key}={value}"]

    def parameter(self, name: str) -> inspect.Parameter:
        """The option as a keyword parameter for Typer: `--<name>`, a flag for a bool."""
        if self.type is bool:
            return keyword(name, Annotated[bool, typer.Option(flag(name), help=self.help)], False)
        return keyword(name, Annotated[self.type | None, typer.Option(flag(name), help=self.help)])


def per_input_option(name: str, option: InputOption) -> inspect.Parameter:
    """The Typer option `--<name>` of a per-input option, its help saying how a CSV list sets it."""
    help_text = f"{option.help} Per input: the `{name}` column of a CSV input list."
    return keyword(name, Annotated[option.type | None, typer.Option(flag(name), help=help_text)])


def keyword(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    """A keyword-only parameter of a generated signature: Typer reads an option from each."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def flag(name: str) -> str:
    """The command-line flag of a parameter, as Typer names it: `centroid_space` -> `--centroid-space`."""
    return f"--{name.replace('_', '-')}"


def with_shared_options(
    config: MethodConfig,
    reading: tuple[str, ...] = (),
    per_input: Mapping[str, InputOption] | None = None,
    setting: Mapping[str, ConfigOption] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@with_shared_options(CONFIG)` gives a method command the shared options, its `--config`
    listing the presets of the method's config folder, and its size option if the method has one
    (`config.size`, e.g. `--diameter`). `reading` names the image-reading options it takes too (of
    READING_OPTIONS, e.g. ("channel", "axes")), and `per_input` the options that a CSV input list
    may also set per input (`MethodSpec.input_options`), `setting` the options that set a config
    value (`ConfigOption`, e.g. `--method`). Typer sees them all in the signature; the command
    declares its own options and a keyword-only `run: CommandRun`, in which it receives the others,
    checked, to pass on to `run_method`."""

    setting, per_input, size = setting or {}, per_input or {}, config.size

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = get_type_hints(command, include_extras=True)  # the annotations as objects, not strings
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name])
            for p in inspect.signature(command).parameters.values()
            if p.name != "run"
        ]
        sized = []
        if size is not None:
            sized.append(keyword(size.name, Annotated[float | None, typer.Option(flag(size.name), help=size.help)]))
        defaults, types = SharedOptions(), get_type_hints(SharedOptions)
        generated = [
            *(per_input_option(name, option) for name, option in per_input.items()),
            *(option.parameter(name) for name, option in setting.items()),
            *sized,
            *(keyword(name, READING_OPTIONS[name][0]) for name in reading),
            *(
                keyword(
                    f.name,
                    Annotated[types[f.name], shared_option(f.name, config.config_dir)],
                    getattr(defaults, f.name),
                )
                for f in fields(SharedOptions)
            ),
        ]

        def wrapper(**kwargs: Any) -> Any:
            shared = SharedOptions(**{f.name: kwargs.pop(f.name) for f in fields(SharedOptions)})
            options = {name: READING_OPTIONS[name][1](kwargs.pop(name)) for name in reading}
            options |= {name: kwargs.pop(name) for name in per_input}
            given_size = None if size is None else kwargs.pop(size.name)
            overrides = [o for name, option in setting.items() for o in option.overrides(name, kwargs.pop(name))]
            return command(run=CommandRun(shared, options, given_size, overrides), **kwargs)

        wrapper.__signature__ = inspect.Signature(own + generated)
        wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
        wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
        return wrapper

    return decorate
