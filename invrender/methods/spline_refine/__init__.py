"""spline-refine: Splender-style spline refinement by differentiable rendering
(Zdyb, Alonso, Kirkegaard), with the active-contour baseline."""

import typer


def register(app: typer.Typer) -> None:
    """Entry point of the `invrender.methods` group: add this method's command to the CLI."""
    from invrender.methods.spline_refine.command import spline_refine

    app.command("spline-refine")(spline_refine)
