"""cell-seg / cell-eval: instance masks and tracks of cells in 2D fluorescence time-lapses, every
cell a star-convex contour fitted by differentiable rendering (after the Erlangen thesis
"Semi-Supervised Segmentation of Cell Images using Differentiable Rendering"); the Cell Tracking
Challenge's SEG, DET and TRA measures."""

import typer

from invrender.methods.cell_seg import losses  # noqa: F401  (registers the method's losses)


def register(app: typer.Typer, synth: typer.Typer) -> None:
    """Entry point of the `invrender.methods` group: add this method's commands to the CLI and its
    synthetic data to `invrender synth`."""
    from invrender.methods.cell_seg.command import cell_seg, synth_cells
    from invrender.methods.cell_seg.evaluate import cell_eval

    app.command("cell-seg")(cell_seg)
    app.command("cell-eval")(cell_eval)
    synth.command("cells")(synth_cells)
