"""spline-refine: Splender-style spline refinement by differentiable rendering
(Zdyb, Alonso, Kirkegaard), with the active-contour baseline."""

import typer

from invrender.methods.spline_refine import losses  # noqa: F401  (registers the method's losses)


def register(app: typer.Typer, synth: typer.Typer) -> None:
    """Entry point of the `invrender.methods` group: add this method's command to the CLI and its
    synthetic data to `invrender synth`."""
    from invrender.methods.spline_refine.command import spline_refine, synth_splines, synth_splines_movie

    app.command("spline-refine")(spline_refine)
    synth.command("splines")(synth_splines)
    synth.command("splines-movie")(synth_splines_movie)
