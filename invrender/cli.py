"""The `invrender` command line: global options, one sub-command per method, `synth` for data.

Methods are found through the entry-point group `invrender.methods`: each entry point is a
function `register(app, synth)` that adds the method's command(s) to `app` and its synthetic-data
generator(s) to `synth` (the `invrender synth` group). Built-in methods register the same way a
third-party plug-in would.
"""

from __future__ import annotations

import signal
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import Abort, Exit, TyperException

from invrender.config import ConfigError
from invrender.core.io import InputError
from invrender.isolation import allow_forking
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
    run_dir: Annotated[Path, typer.Argument(help="A run folder (the --out of a run or sweep).", show_default=False)],
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Where to write the CSV (default: RUN_DIR/report.csv).")
    ] = None,
) -> None:
    """Print a run folder's manifest(s) as a table, one row per input, and write it as CSV."""
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


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; usage, config and input errors become one line on stderr and exit code 2."""
    _register_methods()
    # A scheduler stops a job with SIGTERM (SLURM on cancel or time-out, `kill`): treat it as Ctrl-C,
    # so that the manifest records what finished and `--resume` goes on from there.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        # Without standalone mode, `typer.Exit(code)` raised by a command comes back as the
        # return value (the code) rather than as an exception.
        code = app(args=argv, prog_name="invrender", standalone_mode=False)
    except Exit as done:
        return done.exit_code
    except TyperException as err:  # unknown option, missing argument, bad value
        message = " ".join((err.format_message() if hasattr(err, "format_message") else str(err)).split())
        if message:  # empty when the help was shown for a bare command (no_args_is_help)
            print(f"invrender: error: {message}", file=sys.stderr)
        return 2
    except (ConfigError, InputError) as err:
        print(f"invrender: error: {err}", file=sys.stderr)
        return 2
    except Abort:  # end of input at a prompt
        print("invrender: aborted", file=sys.stderr)
        return INTERRUPTED
    if code == INTERRUPTED:  # Typer turns Ctrl-C (and SIGTERM, above) into this code; no command returns it
        print("invrender: interrupted; finished inputs are kept, run again with --resume", file=sys.stderr)
    return code if isinstance(code, int) else 0


def program() -> None:
    """The `invrender` executable: `main` in a process that may run its jobs in forked children
    (see isolation.py); `main` called from Python runs them in the caller's process."""
    allow_forking()
    sys.exit(main())


if __name__ == "__main__":
    program()
