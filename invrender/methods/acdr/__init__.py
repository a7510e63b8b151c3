"""acdr-train / acdr-predict / acdr-eval: polygons evolved by a network-predicted displacement
field, trained through a differentiable polygon renderer (ACDRNet: Gur, Shaharabany, Wolf)."""

import typer


def register(app: typer.Typer) -> None:
    """Entry point of the `invrender.methods` group: add this method's commands to the CLI."""
    from invrender.methods.acdr.command import acdr_eval, acdr_predict, acdr_train

    app.command("acdr-train")(acdr_train)
    app.command("acdr-predict")(acdr_predict)
    app.command("acdr-eval")(acdr_eval)
