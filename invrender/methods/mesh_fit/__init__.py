"""mesh-fit: 3D cell meshes and the microscope's PSF from fluorescence stacks through a
differentiable Fourier-space microscope (deltaMic: Ichbiah, Sinha, Delbary, Turlier)."""

import typer


def register(app: typer.Typer, synth: typer.Typer) -> None:
    """Entry point of the `invrender.methods` group: add this method's command to the CLI and its
    synthetic data to `invrender synth`."""
    from invrender.methods.mesh_fit.command import mesh_fit, synth_mesh

    app.command("mesh-fit")(mesh_fit)
    synth.command("mesh")(synth_mesh)
