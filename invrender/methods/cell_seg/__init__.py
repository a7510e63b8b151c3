"""cell-seg / cell-eval: instance masks and tracks of cells in 2D fluorescence time-lapses, every
cell a star-convex contour fitted by differentiable rendering (after the Erlangen thesis
"Semi-Supervised Segmentation of Cell Images using Differentiable Rendering"); the Cell Tracking
Challenge's SEG measure."""

import typer


def register(app: typer.Typer) -> None:
    """Entry point of the `invrender.methods` group: add this method's commands to the CLI."""
    from invrender.methods.cell_seg.command import cell_seg
    from invrender.methods.cell_seg.evaluate import cell_eval

    app.command("cell-seg")(cell_seg)
    app.command("cell-eval")(cell_eval)
