"""The `invrender` command line: global options, one sub-command per method, `synth` for data.

Methods are found through the entry-point group `invrender.methods`: each entry point is a
function `register(app)` that adds the method's command(s). Built-in methods register the same
way a third-party plug-in would.
"""

from __future__ import annotations

import signal
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.exceptions import Abort, Exit, TyperException

from invrender.config import ConfigError
from invrender.core.io import InputError

app = typer.Typer(
    name="invrender",
    help="Explicit shapes (splines, meshes, polygons) from images by differentiable rendering.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
synth_app = typer.Typer(help="Synthetic data with perfect labels, for tests, demos and benchmarks.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"invrender {metadata.version('invrender')}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = None,
) -> None:
    """invrender: fit splines, meshes and polygons to microscopy and medical images."""


@synth_app.command("splines")
def synth_splines(
    bodies: Annotated[int, typer.Option("--bodies", "-n", min=1, help="Bodies per frame.")] = 1,
    frames: Annotated[int, typer.Option("--frames", "-f", min=1, help="Number of frames.")] = 8,
    size: Annotated[int, typer.Option("--size", min=32, help="Frame size in pixels.")] = 128,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("synth-splines"),
) -> None:
    """Frames of overlapping slender bodies with labels and perturbed inits (rotation, displacement,
    scaling, PCA, straight lines), as in Zdyb et al.'s robustness study."""
    from invrender.core.synth.splines import write_spline_dataset

    write_spline_dataset(out, bodies=bodies, frames=frames, size=size, seed=seed)
    typer.echo(f"wrote {frames} frame(s) of {bodies} bodies to {out}", err=True)


@synth_app.command("mesh")
def synth_mesh(
    mesh: Annotated[Path, typer.Argument(help="A mesh (.obj, .ply, .off, .stl, .rec).", show_default=False)],
    size: Annotated[int, typer.Option("--size", min=16, help="Stack size in voxels (a cube).")] = 64,
    sigma: Annotated[float, typer.Option("--sigma", min=0.1, help="Gaussian PSF standard deviation, voxels.")] = 2.0,
    noise: Annotated[float, typer.Option("--noise", min=0.0, help="Gaussian noise, relative to the peak.")] = 0.05,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("synth-mesh"),
) -> None:
    """A noisy fluorescence stack of a mesh (scaled into the box) through a Gaussian PSF, with the
    placed mesh and the PSF as ground truth."""
    from invrender.core.geometry.meshes import read_mesh
    from invrender.core.synth.meshes import write_mesh_dataset

    paths = write_mesh_dataset(read_mesh(mesh), mesh.stem, out, size, sigma, noise, seed)
    typer.echo(f"wrote {', '.join(p.name for p in paths)} to {out}", err=True)


@synth_app.command("shapes")
def synth_shapes(
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="Number of images.")] = 200,
    size: Annotated[int, typer.Option("--size", min=16, help="Image size in pixels (square).")] = 64,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("synth-shapes"),
) -> None:
    """Images of one star-shaped (often concave) object each, with a distractor, uneven background,
    blur and noise, and the object's mask: images/ and masks/ (the generic layout of acdr-train)."""
    from invrender.core.synth.shapes import write_shape_dataset

    write_shape_dataset(out, count, size, seed)
    typer.echo(f"wrote {count} image(s) and mask(s) to {out}", err=True)


@synth_app.command("cells")
def synth_cells(
    frames: Annotated[int, typer.Option("--frames", "-f", min=1, help="Number of frames.")] = 20,
    size: Annotated[int, typer.Option("--size", min=32, help="Frame size in pixels (square).")] = 256,
    cells: Annotated[int, typer.Option("--cells", "-n", min=1, help="Nuclei in the first frame.")] = 12,
    divisions: Annotated[int, typer.Option("--divisions", min=0, help="How many of them divide (each at its own frame).")] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("synth-cells"),
) -> None:
    """A fluorescence time-lapse of moving, dividing nuclei with perfect segmentation and tracking
    ground truth, in the Cell Tracking Challenge layout: 01/, 01_GT/SEG/, 01_GT/TRA/."""
    from invrender.core.synth.cells import write_cell_dataset

    # Each division ends a mother's track in a frame of its own, neither the first nor the last,
    # and each mother is a different nucleus of the first frame.
    if divisions and divisions >= frames - 1:
        raise typer.BadParameter(f"must be < frames - 1 = {frames - 1} (divisions happen at distinct frames, not the first or last), got {divisions}", param_hint="--divisions")
    if divisions > cells:
        raise typer.BadParameter(f"must be <= --cells = {cells}, got {divisions}", param_hint="--divisions")
    try:
        summary = write_cell_dataset(out, frames=frames, size=size, cells=cells, divisions=divisions, seed=seed)
    except ValueError as err:  # the nuclei do not fit into the frame
        raise typer.BadParameter(str(err), param_hint="--cells") from None
    typer.echo(f"wrote {frames} frame(s) of {len(summary['tracks'])} tracks ({divisions} division(s), SNR {summary['snr']:.1f}) to {out}", err=True)


@synth_app.command("ct")
def synth_ct(
    labels: Annotated[Path, typer.Option("--labels", help="Vertebra label mask (NIfTI, VerSe labels).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("synth-ct"),
    centroids: Annotated[Optional[Path], typer.Option("--centroids", help="VerSe centroid JSON of the mask (moved with it); default: the deformed labels' centroids.")] = None,
    levels: Annotated[Optional[str], typer.Option("--levels", help="Field of view: the labels A-B (inclusive) plus 20 mm, e.g. 20-24; default all.")] = None,
    spacing: Annotated[str, typer.Option("--spacing", help="Voxel size, mm: one number (isotropic) or x,y,z along R-L, A-P, S-I, e.g. 0.7,0.7,2.5.")] = "1",
    orientation: Annotated[Optional[str], typer.Option("--orientation", help="Axis codes of the stored grid, e.g. LAS or PIR; default: the mask's.")] = None,
    tilt: Annotated[float, typer.Option("--tilt", min=0.0, max=45.0, help="Degrees of rotation of the spine about an axis in the axial plane.")] = 0.0,
    scale: Annotated[float, typer.Option("--scale", min=0.5, max=2.0, help="Size of the person against the mask's (vertebrae and their spacing).")] = 1.0,
    distractors: Annotated[bool, typer.Option("--distractors", help="Add ribs, the aorta and kidneys with contrast, and the lungs.")] = False,
    deform: Annotated[float, typer.Option("--deform", min=0.0, max=10.0, help="Largest displacement of the smooth deformation, mm (0: none, no rigid motion either).")] = 4.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """A CT-like volume (HU) of the vertebrae in a label mask, through a random smooth deformation,
    with the deformed labels and their centroids: <name>_ct.nii.gz, <name>_msk.nii.gz, <name>_ctd.json."""
    from invrender.core.synth.ct import axis_directions, parse_spacing, write_ct_dataset

    bounds = None
    if levels is not None:
        parts = levels.split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or int(parts[0]) > int(parts[1]):
            raise typer.BadParameter(f"expected A-B with labels A <= B, e.g. 20-24, got {levels!r}", param_hint="--levels")
        bounds = (int(parts[0]), int(parts[1]))
    try:
        sizes = parse_spacing([float(v) for v in spacing.split(",")])
    except ValueError:
        raise typer.BadParameter(f"{spacing!r} is not one or three positive numbers (mm)", param_hint="--spacing") from None
    if sizes.min() < 0.25:
        raise typer.BadParameter(f"{spacing!r}: every voxel size must be at least 0.25 mm", param_hint="--spacing")
    if orientation is not None:
        try:
            axis_directions(orientation)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--orientation") from None
    try:
        summary = write_ct_dataset(labels, out, centroids, levels=bounds, spacing=tuple(sizes), deform=deform, seed=seed,
                                   orientation=orientation, tilt=tilt, scale=scale, distractors=distractors)
    except ValueError as err:  # no label in the mask, or none in --levels
        raise typer.BadParameter(str(err), param_hint="--levels" if bounds else "--labels") from None
    shape = "x".join(map(str, summary["shape"]))
    size = "x".join(f"{v:g}" for v in summary["spacing"])
    typer.echo(f"wrote {summary['name']}_ct/_msk/_ctd ({shape} {summary['orientation']} at {size} mm, labels {summary['labels']}, "
               f"{len(summary['centroids'])} centroid(s), max displacement {summary['max_displacement']:.1f} mm) to {out}", err=True)


@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (the --out of a run or sweep).", show_default=False)],
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="Where to write the CSV (default: RUN_DIR/report.csv).")] = None,
) -> None:
    """Print a run folder's manifest(s) as a table, one row per input, and write it as CSV."""
    from rich.console import Console

    from invrender.report import print_report, report_rows, write_report

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
        entry.load()(app)


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


if __name__ == "__main__":
    sys.exit(main())
