"""The `invrender` command line: global options, one sub-command per method, `synth` for data.

Methods are found through the entry-point group `invrender.methods`: each entry point is a
function `register(app, synth)` that adds the method's command(s) to `app` and its synthetic-data
generator(s) to `synth` (the `invrender synth` group). Built-in methods register the same way a
third-party plug-in would.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import Abort, Exit, TyperException

from invrender.config import ConfigError
from invrender.core.io import InputError
from invrender.interrupt import stop_on_signals
from invrender.isolation import allow_forking
from invrender.messages import PROGRAM, error_line, one_line
from invrender.outdir import check_out_file

app = typer.Typer(
    name="invrender",
    help="Explicit shapes (splines, meshes, polygons) from images by differentiable rendering.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
synth_app = typer.Typer(
    help="Synthetic data with perfect labels, for tests, demos and benchmarks.", no_args_is_help=True
)
app.add_typer(synth_app, name="synth")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"invrender {metadata.version('invrender')}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
) -> None:
    """invrender: fit splines, meshes and polygons to microscopy and medical images."""


@app.command("report")
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="A run folder (the --out of any command: a run, sweep, shards, acdr-train or acdr-eval), or the "
            "scores file of cell-eval --json.",
            show_default=False,
        ),
    ],
    csv_path: Annotated[
        Path | None,
        typer.Option(
            "--csv", help="Where to write the CSV (default: RUN_DIR/report.csv; NAME.report.csv beside a file)."
        ),
    ] = None,
) -> None:
    """Print a run folder's manifest(s) as a table, one row per input with its status, time, loss
    and quality figures (Dice, SSIM, PSNR, mIoU, SEG, DET, TRA, where the outputs hold them), and
    write it as CSV."""
    from rich.console import Console

    from invrender.report import print_report, report_rows, write_report

    if csv_path is not None:
        check_out_file(csv_path, "--csv")
    rows = report_rows(run_dir)
    print_report(rows, Console())
    written = write_report(run_dir, rows, csv_path)
    typer.echo(f"wrote {written}", err=True)


_registered: list[bool] = []


def _register_methods() -> None:
    if _registered:
        return
    _registered.append(True)
    for entry in sorted(metadata.entry_points(group="invrender.methods"), key=lambda e: e.name):
        entry.load()(app, synth_app)


INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; usage, config and input errors become one line on stderr and exit code 2."""
    _register_methods()
    with stop_on_signals():  # SIGTERM (a scheduler's cancel) and Ctrl-C: see interrupt.py
        return _run_app(argv)


def _run_app(argv: list[str] | None) -> int:
    try:
        # Without standalone mode, `typer.Exit(code)` raised by a command comes back as the
        # return value (the code) rather than as an exception.
        code = app(args=argv, prog_name="invrender", standalone_mode=False)
    except Exit as done:
        return done.exit_code
    except TyperException as err:  # unknown option, missing argument, bad value
        # (Typer's Click exception classes are private: they are told apart by name.)
        if type(err).__name__ == "NoArgsIsHelpError":  # a bare `invrender` or `invrender synth`: its help, shown
            return 2
        print(error_line(usage_problem(err)), file=sys.stderr)
        return 2
    except (ConfigError, InputError) as err:
        print(error_line(str(err)), file=sys.stderr)
        return 2
    except Abort:  # end of input at a prompt
        print(f"{PROGRAM}: aborted", file=sys.stderr)
        return INTERRUPTED
    if code == INTERRUPTED:  # Typer turns Ctrl-C (and SIGTERM, see interrupt.py) into this code; no command returns it
        print(f"{PROGRAM}: interrupted; finished inputs are kept, run again with --resume", file=sys.stderr)
    return code if isinstance(code, int) else 0


def usage_problem(err: TyperException) -> str:
    """A usage error found by Typer's parser as "<option or argument>: <problem>", the form of every
    error line (Click says "Invalid value for '--seed': ...", "Missing option '--checkpoint'.", "No
    such option: --sed")."""
    message = one_line(err.message).rstrip(".")
    param = getattr(err, "param", None)
    hint = getattr(err, "param_hint", None)
    option = getattr(err, "option_name", None)  # NoSuchOption, BadOptionUsage
    if type(err).__name__ == "MissingParameter":
        return f"{_param_name(param, hint)}: missing (it is required)"
    if param is not None or hint is not None:  # BadParameter: from a parameter's type or a command's check
        return f"{_param_name(param, hint)}: {message}"
    if option is not None:
        possible = getattr(err, "possibilities", None)
        if type(err).__name__ == "NoSuchOption":
            return f"{option}: no such option" + (f" (did you mean {', '.join(sorted(possible))}?)" if possible else "")
        return f"{option}: {message.removeprefix(f'Option {option!r} ')}"
    unknown = re.fullmatch(r"No such command '([^']+)'\.?\s*(.*)", message)  # and perhaps "Did you mean ...?"
    if unknown:
        return f"{unknown.group(1)}: no such command ({unknown.group(2) or f'`{PROGRAM} --help` lists them'})"
    ctx = getattr(err, "ctx", None)
    command = ctx.command_path if ctx is not None else PROGRAM
    return f"{command}: {message[:1].lower()}{message[1:]}"  # e.g. "got unexpected extra argument (x)"


def _param_name(param, hint) -> str:
    """How an error names a parameter: its long option (`--seed`) or an argument's metavar (`RES`)."""
    if hint is not None:
        return hint if isinstance(hint, str) else " / ".join(hint)
    if param is None:
        return PROGRAM
    if getattr(param, "param_type_name", "") == "option":
        return max(param.opts, key=len)
    return (getattr(param, "metavar", None) or param.name).upper().rstrip(".")


def program() -> None:
    """The `invrender` executable: `main` in a process that may run its jobs in forked children
    (see isolation.py); `main` called from Python runs them in the caller's process."""
    allow_forking()
    sys.exit(main())


if __name__ == "__main__":
    program()
