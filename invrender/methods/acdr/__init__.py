"""acdr-train / acdr-predict / acdr-eval: polygons evolved by a network-predicted displacement
field, trained through a differentiable polygon renderer (ACDRNet: Gur, Shaharabany, Wolf)."""

import typer

from invrender.methods.acdr import losses  # noqa: F401  (registers the method's losses)


def register(app: typer.Typer, synth: typer.Typer) -> None:
    """Entry point of the `invrender.methods` group: add this method's commands to the CLI and its
    synthetic data to `invrender synth`."""
    from invrender.methods.acdr.command import acdr_eval, acdr_predict, acdr_train, synth_shapes

    app.command("acdr-train")(acdr_train)
    app.command("acdr-predict")(acdr_predict)
    app.command("acdr-eval")(acdr_eval)
    synth.command("shapes")(synth_shapes)
