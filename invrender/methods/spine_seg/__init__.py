"""spine-seg / spine-template: vertebra segmentation of CT without training, by fitting a
deformable spine template with a learned appearance (Kim and Park, SPIE Medical Imaging 2024)."""

import typer

from invrender.methods.spine_seg import losses  # noqa: F401  (registers the method's losses)


def register(app: typer.Typer, synth: typer.Typer) -> None:
    """Entry point of the `invrender.methods` group: add this method's commands to the CLI and its
    synthetic data to `invrender synth`."""
    from invrender.methods.spine_seg.command import spine_seg, synth_ct
    from invrender.methods.spine_seg.template import spine_template

    app.command("spine-seg")(spine_seg)
    app.command("spine-template")(spine_template)
    synth.command("ct")(synth_ct)
