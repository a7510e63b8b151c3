"""mesh-fit: 3D cell meshes and the microscope's PSF from fluorescence stacks through a
differentiable Fourier-space microscope (deltaMic: Ichbiah, Sinha, Delbary, Turlier)."""

import typer


def register(app: typer.Typer) -> None:
    """Entry point of the `invrender.methods` group: add this method's command to the CLI."""
    from invrender.methods.mesh_fit.command import mesh_fit

    app.command("mesh-fit")(mesh_fit)
